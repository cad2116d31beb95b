-- Kordon storage index, PostgreSQL (production). Keep in step with ../sqlite/.
-- Times are microseconds since the Unix epoch (UTC); hashes are raw 32-byte SHA-256.

-- The head of each camera's hash chain: the serialisation point for registrations (a
-- registration's conditional update of this row fails when another registered first), and
-- an O(1) answer to GetChainHead.
CREATE TABLE chain_heads (
    site              TEXT    NOT NULL,
    camera            TEXT    NOT NULL,
    head_sequence     BIGINT NOT NULL,
    head_hash         BYTEA   NOT NULL,
    recorded_until_us BIGINT NOT NULL,
    PRIMARY KEY (site, camera)
);

-- Segments and gaps share one gapless sequence per camera (the chain).
CREATE TABLE segments (
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    sequence         BIGINT NOT NULL CHECK (sequence >= 1),
    start_us         BIGINT NOT NULL,
    end_us           BIGINT NOT NULL,
    size_bytes       BIGINT NOT NULL CHECK (size_bytes > 0),
    sha256           BYTEA   NOT NULL,
    init_size        BIGINT NOT NULL,
    codec            BIGINT NOT NULL,
    width            BIGINT NOT NULL,
    height           BIGINT NOT NULL,
    object_key       TEXT    NOT NULL,
    ingest_replica   TEXT    NOT NULL,
    prev_hash        BYTEA   NOT NULL,
    record_hash      BYTEA   NOT NULL,
    registered_at_us BIGINT NOT NULL,
    -- Set when retention deleted the object; the row stays as the chain's tombstone.
    deleted_at_us    BIGINT,
    PRIMARY KEY (site, camera, sequence),
    CHECK (end_us > start_us)
);
-- Idempotency of RegisterSegment.
CREATE UNIQUE INDEX segments_by_hash ON segments (site, camera, sha256);
-- Time-range queries: segments are at most 10 minutes long, so "overlapping [from, to)" is
-- a bounded range scan on start_us, already in (start_us, sequence) order.
CREATE INDEX segments_by_time ON segments (site, camera, start_us, sequence);

CREATE TABLE gaps (
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    sequence         BIGINT NOT NULL CHECK (sequence >= 1),
    start_us         BIGINT NOT NULL,
    end_us           BIGINT NOT NULL,
    reason           BIGINT NOT NULL,
    detail           TEXT    NOT NULL,
    ingest_replica   TEXT    NOT NULL,
    prev_hash        BYTEA   NOT NULL,
    record_hash      BYTEA   NOT NULL,
    registered_at_us BIGINT NOT NULL,
    PRIMARY KEY (site, camera, sequence),
    CHECK (end_us > start_us)
);
-- Idempotency of RegisterGap.
CREATE UNIQUE INDEX gaps_by_start ON gaps (site, camera, start_us);
-- Gaps can be long, so overlap queries scan by end.
CREATE INDEX gaps_by_end ON gaps (site, camera, end_us);

-- The access log: one hash chain per site.
CREATE TABLE access_log (
    site           TEXT    NOT NULL,
    sequence       BIGINT NOT NULL CHECK (sequence >= 1),
    time_us        BIGINT NOT NULL,
    principal      TEXT    NOT NULL,
    principal_name TEXT    NOT NULL,
    via_service    TEXT    NOT NULL,
    action         BIGINT NOT NULL,
    -- JSON array of the objects touched, exactly as hashed.
    objects        TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    case_id        TEXT    NOT NULL,
    recipient      TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    prev_hash      BYTEA   NOT NULL,
    hash           BYTEA   NOT NULL,
    PRIMARY KEY (site, sequence)
);
CREATE INDEX access_log_by_time ON access_log (site, time_us);
CREATE INDEX access_log_by_principal ON access_log (site, principal, sequence);
CREATE INDEX access_log_by_case ON access_log (site, case_id, sequence);

-- Which cameras each access-log entry touched (derived from `objects`, not hashed), so
-- "who looked at this camera" is an index scan.
CREATE TABLE access_log_cameras (
    site     TEXT    NOT NULL,
    camera   TEXT    NOT NULL,
    sequence BIGINT NOT NULL,
    PRIMARY KEY (site, camera, sequence)
);
