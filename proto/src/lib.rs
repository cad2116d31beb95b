//! Kordon's v1 gRPC API, generated from `proto/kordon/**.proto`.
//!
//! One module per protobuf package. Services talk to each other only through these clients.

/// The encoded `FileDescriptorSet` of every Kordon package, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kordon_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("kordon.common.v1");
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
