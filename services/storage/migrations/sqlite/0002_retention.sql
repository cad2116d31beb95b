-- Retention policies and legal holds, SQLite. Keep in step with ../postgres/.

-- Retention per site (camera = '') or camera override.
CREATE TABLE retention_policies (
    site          TEXT    NOT NULL,
    camera        TEXT    NOT NULL,
    retention_us  INTEGER NOT NULL CHECK (retention_us > 0),
    updated_at_us INTEGER NOT NULL,
    updated_by    TEXT    NOT NULL,
    PRIMARY KEY (site, camera)
);

-- state: 1 active, 2 released (kordon.storage.v1.LegalHoldState).
CREATE TABLE legal_holds (
    id             TEXT    NOT NULL PRIMARY KEY,
    site           TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    start_us       INTEGER NOT NULL,
    -- NULL: also footage recorded after the hold was created, until it is released.
    end_us         INTEGER,
    state          INTEGER NOT NULL,
    case_id        TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at_us  INTEGER NOT NULL,
    released_by    TEXT    NOT NULL,
    released_at_us INTEGER,
    release_reason TEXT    NOT NULL
);
CREATE UNIQUE INDEX legal_holds_by_request ON legal_holds (site, request_id);
CREATE INDEX legal_holds_by_case ON legal_holds (site, case_id);

CREATE TABLE legal_hold_cameras (
    hold_id TEXT NOT NULL,
    site    TEXT NOT NULL,
    camera  TEXT NOT NULL,
    PRIMARY KEY (hold_id, camera)
);
CREATE INDEX legal_hold_cameras_by_camera ON legal_hold_cameras (site, camera);

-- Live (not tombstoned) segments by time, covering what a playlist reads, so an HLS playlist
-- is an index-only scan, and retention's walk over each camera's oldest segments does not
-- slow down as tombstones accumulate.
-- (deleted_at_us is in the key only so that SQLite sees the index as covering.)
CREATE INDEX segments_live_by_start ON segments (site, camera, start_us, sequence, end_us,
    size_bytes, init_size, deleted_at_us) WHERE deleted_at_us IS NULL;
