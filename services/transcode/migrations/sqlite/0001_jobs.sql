-- Transcode jobs. `spec` and `audit` are the protobuf messages as submitted; the columns beside
-- them are what lists filter and order on. Times are microseconds since the Unix epoch.
CREATE TABLE transcode_jobs (
    id TEXT PRIMARY KEY,
    -- Client idempotency key, unique per submitter ('' = none).
    request_id TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    site TEXT NOT NULL,
    camera TEXT NOT NULL,
    kind INTEGER NOT NULL,
    spec BLOB NOT NULL,
    audit BLOB NOT NULL,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    started_us INTEGER NOT NULL DEFAULT 0,
    finished_us INTEGER NOT NULL DEFAULT 0,
    done_units INTEGER NOT NULL DEFAULT 0,
    total_units INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    frames INTEGER NOT NULL DEFAULT 0,
    speed REAL NOT NULL DEFAULT 0,
    encoder TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    -- The replica running it and when it last said so; a stale one is requeued.
    owner TEXT NOT NULL DEFAULT '',
    heartbeat_us INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX transcode_jobs_request ON transcode_jobs (submitted_by, request_id)
    WHERE request_id <> '';
CREATE INDEX transcode_jobs_queue ON transcode_jobs (state, priority, created_us);
CREATE INDEX transcode_jobs_created ON transcode_jobs (created_us, id);

-- Units of work finished: one per source segment. A resumed job skips them; `part_*` name a
-- viewer copy's part in the scratch directory (the bytes are re-made if the file is gone).
CREATE TABLE transcode_units (
    job_id TEXT NOT NULL REFERENCES transcode_jobs (id) ON DELETE CASCADE,
    source_sequence INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    part_size INTEGER NOT NULL DEFAULT 0,
    part_sha256 BLOB,
    PRIMARY KEY (job_id, source_sequence)
);

-- Files a job wrote, in the site's bucket.
CREATE TABLE transcode_outputs (
    job_id TEXT NOT NULL REFERENCES transcode_jobs (id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    source_sequence INTEGER NOT NULL,
    PRIMARY KEY (job_id, object_key)
);
