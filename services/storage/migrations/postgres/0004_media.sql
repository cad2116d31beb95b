-- Renditions and snapshots, PostgreSQL. Keep in step with ../sqlite/.
-- Copies, not evidence: hashed (and checked against the object at registration) but not
-- chained. Retention deletes them with the footage they belong to (deleted_at_us set).

CREATE TABLE renditions (
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    source_sequence  BIGINT  NOT NULL,
    profile          TEXT    NOT NULL,
    start_us         BIGINT  NOT NULL,
    end_us           BIGINT  NOT NULL,
    codec            BIGINT  NOT NULL,
    width            BIGINT  NOT NULL,
    height           BIGINT  NOT NULL,
    bitrate_bps      BIGINT  NOT NULL,
    object_key       TEXT    NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    sha256           BYTEA   NOT NULL,
    job_id           TEXT    NOT NULL,
    registered_at_us BIGINT  NOT NULL,
    deleted_at_us    BIGINT,
    PRIMARY KEY (site, camera, source_sequence, profile)
);
CREATE INDEX renditions_by_start ON renditions (site, camera, start_us);

-- kind: kordon.storage.v1.SnapshotKind.
CREATE TABLE snapshots (
    id               TEXT    NOT NULL PRIMARY KEY,
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    kind             BIGINT  NOT NULL,
    captured_at_us   BIGINT  NOT NULL,
    content_type     TEXT    NOT NULL,
    width            BIGINT  NOT NULL,
    height           BIGINT  NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    sha256           BYTEA   NOT NULL,
    object_key       TEXT    NOT NULL,
    detection_id     TEXT    NOT NULL,
    source_sequence  BIGINT  NOT NULL,
    registered_at_us BIGINT  NOT NULL,
    deleted_at_us    BIGINT
);
CREATE UNIQUE INDEX snapshots_by_object ON snapshots (site, object_key);
CREATE INDEX snapshots_by_time ON snapshots (site, camera, captured_at_us);
