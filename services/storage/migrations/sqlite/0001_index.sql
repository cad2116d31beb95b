-- Kordon storage index, SQLite (the embedded default). Keep in step with ../postgres/.
-- Times are microseconds since the Unix epoch (UTC); hashes are raw 32-byte SHA-256.

-- The head of each camera's hash chain: the serialisation point for registrations (a
-- registration's conditional update of this row fails when another registered first), and
-- an O(1) answer to GetChainHead.
CREATE TABLE chain_heads (
    site              TEXT    NOT NULL,
    camera            TEXT    NOT NULL,
    head_sequence     INTEGER NOT NULL,
    head_hash         BLOB    NOT NULL,
    recorded_until_us INTEGER NOT NULL,
    PRIMARY KEY (site, camera)
);

-- Segments and gaps share one gapless sequence per camera (the chain).
CREATE TABLE segments (
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    sequence         INTEGER NOT NULL CHECK (sequence >= 1),
    start_us         INTEGER NOT NULL,
    end_us           INTEGER NOT NULL,
    size_bytes       INTEGER NOT NULL CHECK (size_bytes > 0),
    sha256           BLOB    NOT NULL,
    init_size        INTEGER NOT NULL,
    codec            INTEGER NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    object_key       TEXT    NOT NULL,
    ingest_replica   TEXT    NOT NULL,
    prev_hash        BLOB    NOT NULL,
    record_hash      BLOB    NOT NULL,
    registered_at_us INTEGER NOT NULL,
    -- Set when retention deleted the object; the row stays as the chain's tombstone.
    deleted_at_us    INTEGER,
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
    sequence         INTEGER NOT NULL CHECK (sequence >= 1),
    start_us         INTEGER NOT NULL,
    end_us           INTEGER NOT NULL,
    reason           INTEGER NOT NULL,
    detail           TEXT    NOT NULL,
    ingest_replica   TEXT    NOT NULL,
    prev_hash        BLOB    NOT NULL,
    record_hash      BLOB    NOT NULL,
    registered_at_us INTEGER NOT NULL,
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
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    time_us        INTEGER NOT NULL,
    principal      TEXT    NOT NULL,
    principal_name TEXT    NOT NULL,
    via_service    TEXT    NOT NULL,
    action         INTEGER NOT NULL,
    -- JSON array of the objects touched, exactly as hashed.
    objects        TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    case_id        TEXT    NOT NULL,
    recipient      TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
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
    sequence INTEGER NOT NULL,
    PRIMARY KEY (site, camera, sequence)
);
