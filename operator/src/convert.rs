//! Proto views of the Camera resource's stream settings that ingest and detection share.
//! Each service's package generates its own `CredentialsRef` and `RtspTransport` (same fields,
//! same values); one macro writes the conversions for both, so they cannot drift apart.

use crate::crd::{CredentialsRef, RtspTransport};

macro_rules! stream_conversions {
    ($service:ident) => {
        impl From<&CredentialsRef> for kordon_proto::$service::v1::CredentialsRef {
            fn from(c: &CredentialsRef) -> Self {
                Self {
                    secret_name: c.secret_name.clone(),
                    username_key: c.username_key.clone().unwrap_or_default(),
                    password_key: c.password_key.clone().unwrap_or_default(),
                }
            }
        }

        impl From<RtspTransport> for kordon_proto::$service::v1::RtspTransport {
            fn from(t: RtspTransport) -> Self {
                match t {
                    RtspTransport::Tcp => Self::Tcp,
                    RtspTransport::Udp => Self::Udp,
                }
            }
        }
    };
}

stream_conversions!(ingest);
stream_conversions!(detection);
