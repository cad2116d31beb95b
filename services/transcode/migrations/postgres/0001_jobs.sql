-- Transcode jobs. `spec` and `audit` are the protobuf messages as submitted; the columns beside
-- them are what lists filter and order on. Times are microseconds since the Unix epoch.
CREATE TABLE transcode_jobs (
    id TEXT PRIMARY KEY,
    -- Client idempotency key, unique per submitter ('' = none).
    request_id TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    site TEXT NOT NULL,
    camera TEXT NOT NULL,
    kind BIGINT NOT NULL,
    spec BYTEA NOT NULL,
    audit BYTEA NOT NULL,
    priority BIGINT NOT NULL,
    state BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    started_us BIGINT NOT NULL DEFAULT 0,
    finished_us BIGINT NOT NULL DEFAULT 0,
    done_units BIGINT NOT NULL DEFAULT 0,
    total_units BIGINT NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    frames BIGINT NOT NULL DEFAULT 0,
    speed DOUBLE PRECISION NOT NULL DEFAULT 0,
    encoder TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    -- The replica running it and when it last said so; a stale one is requeued.
    owner TEXT NOT NULL DEFAULT '',
    heartbeat_us BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX transcode_jobs_request ON transcode_jobs (submitted_by, request_id)
    WHERE request_id <> '';
CREATE INDEX transcode_jobs_queue ON transcode_jobs (state, priority, created_us);
CREATE INDEX transcode_jobs_created ON transcode_jobs (created_us, id);

-- Units of work finished: one per source segment. A resumed job skips them; `part_*` name a
-- viewer copy's part in the scratch directory (the bytes are re-made if the file is gone).
CREATE TABLE transcode_units (
    job_id TEXT NOT NULL REFERENCES transcode_jobs (id) ON DELETE CASCADE,
    source_sequence BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    part_size BIGINT NOT NULL DEFAULT 0,
    part_sha256 BYTEA,
    PRIMARY KEY (job_id, source_sequence)
);

-- Files a job wrote, in the site's bucket.
CREATE TABLE transcode_outputs (
    job_id TEXT NOT NULL REFERENCES transcode_jobs (id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    start_us BIGINT NOT NULL,
    end_us BIGINT NOT NULL,
    source_sequence BIGINT NOT NULL,
    PRIMARY KEY (job_id, object_key)
);
