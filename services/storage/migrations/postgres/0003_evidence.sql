-- Evidence bundles, PostgreSQL. Keep in step with ../sqlite/.

-- state: 1 building, 2 ready, 3 failed (kordon.storage.v1.EvidenceBundleState).
-- The manifest is kept exactly as signed; the archive lives in the bucket at object_key.
CREATE TABLE evidence_bundles (
    id               TEXT    NOT NULL PRIMARY KEY,
    site             TEXT    NOT NULL,
    request_id       TEXT    NOT NULL,
    state            BIGINT  NOT NULL,
    -- JSON array of camera names.
    cameras          TEXT    NOT NULL,
    start_us         BIGINT  NOT NULL,
    end_us           BIGINT  NOT NULL,
    case_id          TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    exported_by      TEXT    NOT NULL,
    created_at_us    BIGINT  NOT NULL,
    completed_at_us  BIGINT,
    segment_count    BIGINT  NOT NULL,
    gap_count        BIGINT  NOT NULL,
    object_key       TEXT    NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    sha256           BYTEA,
    manifest         BYTEA,
    manifest_sha256  BYTEA,
    signature        BYTEA,
    signing_key      BYTEA,
    error            TEXT    NOT NULL
);
CREATE UNIQUE INDEX evidence_bundles_by_request ON evidence_bundles (site, request_id);
CREATE INDEX evidence_bundles_by_case ON evidence_bundles (site, case_id);
