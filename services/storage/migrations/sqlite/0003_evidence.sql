-- Evidence bundles, SQLite. Keep in step with ../postgres/.

-- state: 1 building, 2 ready, 3 failed (kordon.storage.v1.EvidenceBundleState).
-- The manifest is kept exactly as signed; the archive lives in the bucket at object_key.
CREATE TABLE evidence_bundles (
    id               TEXT    NOT NULL PRIMARY KEY,
    site             TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    state            INTEGER NOT NULL,
    -- JSON array of camera names.
    cameras          TEXT    NOT NULL,
    start_us         INTEGER NOT NULL,
    end_us           INTEGER NOT NULL,
    case_id          TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    exported_by      TEXT    NOT NULL,
    created_at_us    INTEGER NOT NULL,
    completed_at_us  INTEGER,
    segment_count    INTEGER NOT NULL,
    gap_count        INTEGER NOT NULL,
    object_key       TEXT    NOT NULL,
    size_bytes       INTEGER NOT NULL,
    sha256           BLOB,
    manifest         BLOB,
    manifest_sha256  BLOB,
    signature        BLOB,
    signing_key      BLOB,
    error            TEXT    NOT NULL
);
CREATE UNIQUE INDEX evidence_bundles_by_request ON evidence_bundles (site, request_id);
CREATE INDEX evidence_bundles_by_case ON evidence_bundles (site, case_id);
