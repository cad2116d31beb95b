//! The few S3 calls `object_store` has no API for, signed with its SigV4 signer: creating a
//! bucket with Object Lock enabled, reading an object version's retention, and deleting one
//! object version (which Object Lock refuses until the retention ends). Used by tests and
//! setup tools to prove WORM behaviour; production writes go through [`crate::build`].

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use object_store::ClientOptions;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, ReqwestConnector};

use crate::ObjectsError;
use crate::config::ObjectStoreConfig;

/// A signed-request client for one S3 endpoint.
pub struct S3Raw {
    client: HttpClient,
    endpoint: String,
    region: String,
    credential: AwsCredential,
}

/// An object version's Object Lock retention, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// As the store prints it, e.g. `2026-12-28T00:00:00Z` (or with fractional seconds).
    pub retain_until: String,
}

impl S3Raw {
    /// A client for the endpoint and keys of an S3 configuration (both must be set).
    pub fn from_config(cfg: &ObjectStoreConfig) -> Result<Self, ObjectsError> {
        let ObjectStoreConfig::S3 {
            endpoint: Some(endpoint),
            region,
            access_key_id: Some(key_id),
            secret_access_key: Some(secret),
            allow_http,
            ..
        } = cfg
        else {
            return Err(ObjectsError::config(
                "endpoint",
                "raw S3 calls need an S3 configuration with endpoint and keys",
            ));
        };
        let options = ClientOptions::new().with_allow_http(*allow_http);
        Ok(Self {
            client: ReqwestConnector::default().connect(&options)?,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.clone(),
            credential: AwsCredential {
                key_id: key_id.clone(),
                secret_key: secret.clone(),
                token: None,
            },
        })
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, Bytes), ObjectsError> {
        let uri = format!("{}/{}", self.endpoint, path_and_query);
        let mut req: HttpRequest = http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Bytes::new().into())
            .map_err(|e| generic(format!("bad request {uri}: {e}")))?;
        req.headers_mut().extend(headers);
        AwsAuthorizer::new(&self.credential, "s3", &self.region).try_authorize(&mut req, None)?;
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| generic(format!("{uri}: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| generic(format!("{uri}: {e}")))?;
        Ok((status, body))
    }

    /// Creates `bucket`, with Object Lock (and hence versioning) enabled when `object_lock`.
    /// A bucket that already exists and is ours is fine.
    pub async fn create_bucket(&self, bucket: &str, object_lock: bool) -> Result<(), ObjectsError> {
        let mut h = HeaderMap::new();
        if object_lock {
            h.insert(
                HeaderName::from_static("x-amz-bucket-object-lock-enabled"),
                HeaderValue::from_static("true"),
            );
        }
        let (status, body) = self.send(Method::PUT, &encode(bucket), h).await?;
        if status.is_success() || String::from_utf8_lossy(&body).contains("BucketAlreadyOwnedByYou")
        {
            Ok(())
        } else {
            Err(generic(format!(
                "create bucket {bucket}: {status} {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// The retention of one version of an object; `None` when it has none.
    pub async fn retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<Retention>, ObjectsError> {
        let path = format!(
            "{}/{}?retention=&versionId={}",
            encode(bucket),
            encode_key(key),
            encode(version_id)
        );
        let (status, body) = self.send(Method::GET, &path, HeaderMap::new()).await?;
        let text = String::from_utf8_lossy(&body);
        if status == StatusCode::NOT_FOUND || text.contains("NoSuchObjectLockConfiguration") {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(generic(format!("get retention of {key}: {status} {text}")));
        }
        match (xml_text(&text, "Mode"), xml_text(&text, "RetainUntilDate")) {
            (Some(mode), Some(until)) => Ok(Some(Retention {
                mode,
                retain_until: until,
            })),
            _ => Ok(None),
        }
    }

    /// Deletes one version of an object. `Ok(true)` when deleted, `Ok(false)` when the store
    /// refused (403, e.g. under Object Lock retention).
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<bool, ObjectsError> {
        let path = format!(
            "{}/{}?versionId={}",
            encode(bucket),
            encode_key(key),
            encode(version_id)
        );
        let (status, body) = self.send(Method::DELETE, &path, HeaderMap::new()).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::FORBIDDEN => Ok(false),
            s => Err(generic(format!(
                "delete version of {key}: {s} {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }
}

fn generic(message: String) -> ObjectsError {
    ObjectsError::Store(object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`encode`] per path segment, keeping the `/` between them.
fn encode_key(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The text of the first `<tag>...</tag>` in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml[start..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_xml() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_key("x/y z/1.mp4"), "x/y%20z/1.mp4");
        let xml = "<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2026-12-28T00:00:00Z\
                   </RetainUntilDate></Retention>";
        assert_eq!(xml_text(xml, "Mode").as_deref(), Some("COMPLIANCE"));
        assert_eq!(
            xml_text(xml, "RetainUntilDate").as_deref(),
            Some("2026-12-28T00:00:00Z")
        );
        assert_eq!(xml_text(xml, "Nope"), None);
    }
}
