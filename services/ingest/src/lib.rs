//! Kordon ingest: records camera streams into object storage
