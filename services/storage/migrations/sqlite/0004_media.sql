-- Renditions and snapshots, SQLite. Keep in step with ../postgres/.
-- Copies, not evidence: hashed (and checked against the object at registration) but not
-- chained. Retention deletes them with the footage they belong to (deleted_at_us set).

CREATE TABLE renditions (
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    source_sequence  INTEGER NOT NULL,
    profile          TEXT    NOT NULL,
    start_us         INTEGER NOT NULL,
    end_us           INTEGER NOT NULL,
    codec            INTEGER NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    bitrate_bps      INTEGER NOT NULL,
    object_key       TEXT    NOT NULL,
    size_bytes       INTEGER NOT NULL,
    sha256           BLOB    NOT NULL,
    job_id           TEXT    NOT NULL,
    registered_at_us INTEGER NOT NULL,
    deleted_at_us    INTEGER,
    PRIMARY KEY (site, camera, source_sequence, profile)
);
CREATE INDEX renditions_by_start ON renditions (site, camera, start_us);

-- kind: kordon.storage.v1.SnapshotKind.
CREATE TABLE snapshots (
    id               TEXT    NOT NULL PRIMARY KEY,
    site             TEXT    NOT NULL,
    camera           TEXT    NOT NULL,
    kind             INTEGER NOT NULL,
    captured_at_us   INTEGER NOT NULL,
    content_type     TEXT    NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    size_bytes       INTEGER NOT NULL,
    sha256           BLOB    NOT NULL,
    object_key       TEXT    NOT NULL,
    detection_id     TEXT    NOT NULL,
    source_sequence  INTEGER NOT NULL,
    registered_at_us INTEGER NOT NULL,
    deleted_at_us    INTEGER
);
CREATE UNIQUE INDEX snapshots_by_object ON snapshots (site, object_key);
CREATE INDEX snapshots_by_time ON snapshots (site, camera, captured_at_us);
