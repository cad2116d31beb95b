//! What every Kordon process shares: config, telemetry, metrics, admin port, identity, gRPC server, shutdown
