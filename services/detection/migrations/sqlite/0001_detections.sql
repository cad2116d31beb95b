-- Detections: track starts and ends, zone entries and exits, line crossings, and at most one
-- other frame per track per second. `seq` orders rows and makes page tokens stable.
CREATE TABLE detections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    camera TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    class_label TEXT NOT NULL,
    confidence REAL NOT NULL,
    x1 REAL NOT NULL,
    y1 REAL NOT NULL,
    x2 REAL NOT NULL,
    y2 REAL NOT NULL,
    track_id BIGINT NOT NULL,
    phase INTEGER NOT NULL,
    track_started_us BIGINT NOT NULL,
    -- ",zone-a,zone-b," for filtering; `zones` holds names with entry times as JSON.
    zone_names TEXT NOT NULL,
    zones TEXT NOT NULL,
    crossings TEXT NOT NULL,
    snapshot_id TEXT NOT NULL
);
CREATE INDEX detections_time ON detections (time_us, seq);
CREATE INDEX detections_camera_time ON detections (site, camera, time_us, seq);

-- Snapshots detection took; the image lives in object storage and is indexed by storage too.
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    camera TEXT NOT NULL,
    captured_us BIGINT NOT NULL,
    detection_id TEXT NOT NULL,
    object_key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 BLOB NOT NULL,
    -- Storage's id once registered; empty while the upload is pending.
    storage_id TEXT NOT NULL,
    -- Why storage refused it for good (never retried); empty otherwise.
    failure TEXT NOT NULL DEFAULT ''
);
CREATE INDEX snapshots_time ON snapshots (captured_us);
