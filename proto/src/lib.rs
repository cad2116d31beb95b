//! Kordon's v1 gRPC API, generated from `proto/kordon/**.proto`.
//!
//! One module per protobuf package. Services talk to each other only through these clients.

/// The encoded `FileDescriptorSet` of every Kordon package, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kordon_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("kordon.common.v1");

        /// Never prints the secrets (the generated Debug is skipped in `build.rs`).
        impl std::fmt::Debug for RtspCredentials {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("RtspCredentials")
                    .field("username", &"<redacted>")
                    .field("password", &"<redacted>")
                    .finish()
            }
        }

        /// A request's camera filter as `(site, camera)` pairs; INVALID_ARGUMENT naming the
        /// entry when one lacks its site or camera.
        pub fn camera_pairs(list: &[CameraRef]) -> Result<Vec<(String, String)>, tonic::Status> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    if c.site.is_empty() || c.camera.is_empty() {
                        Err(tonic::Status::invalid_argument(format!(
                            "cameras[{i}]: site and camera are required"
                        )))
                    } else {
                        Ok((c.site.clone(), c.camera.clone()))
                    }
                })
                .collect()
        }
    }
}

pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("kordon.ingest.v1");
    }
}

pub mod storage {
    pub mod v1 {
        tonic::include_proto!("kordon.storage.v1");
    }
}

pub mod transcode {
    pub mod v1 {
        tonic::include_proto!("kordon.transcode.v1");
    }
}

pub mod detection {
    pub mod v1 {
        tonic::include_proto!("kordon.detection.v1");
    }
}

pub mod alerting {
    pub mod v1 {
        tonic::include_proto!("kordon.alerting.v1");
    }
}

/// Conversions between `google.protobuf.Timestamp` and the representations Kordon uses:
/// microseconds since the Unix epoch (the index and the spool) and `SystemTime`.
pub mod time {
    use std::time::{SystemTime, UNIX_EPOCH};

    use prost_types::Timestamp;

    const MICROS: i64 = 1_000_000;

    /// Microseconds since the Unix epoch (negative before it) as a Timestamp.
    pub fn timestamp_from_micros(us: i64) -> Timestamp {
        Timestamp {
            seconds: us.div_euclid(MICROS),
            nanos: (us.rem_euclid(MICROS) * 1000) as i32,
        }
    }

    /// A wall-clock time as a Timestamp; times before the epoch become the epoch.
    pub fn timestamp_from_system_time(t: SystemTime) -> Timestamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }

    /// A Timestamp as microseconds since the epoch (sub-microsecond part dropped); `None` when
    /// it does not fit in an `i64`.
    pub fn micros_from_timestamp(t: &Timestamp) -> Option<i64> {
        t.seconds
            .checked_mul(MICROS)
            .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn micros_round_trip_including_before_the_epoch() {
            for us in [0, 1, 999_999, 1_795_826_644_227_123, -1, -1_500_000] {
                let t = timestamp_from_micros(us);
                assert!((0..1_000_000_000).contains(&t.nanos), "{t:?}");
                assert_eq!(micros_from_timestamp(&t), Some(us));
            }
            assert_eq!(
                micros_from_timestamp(&Timestamp {
                    seconds: i64::MAX,
                    nanos: 0
                }),
                None
            );
        }

        #[test]
        fn system_time_matches_micros() {
            let t = UNIX_EPOCH + std::time::Duration::from_micros(1_795_826_644_227_123);
            assert_eq!(
                timestamp_from_system_time(t),
                timestamp_from_micros(1_795_826_644_227_123)
            );
        }
    }
}
