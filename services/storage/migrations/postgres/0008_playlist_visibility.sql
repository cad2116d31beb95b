-- Playlists read segments_live_by_start (0002) with an index-only scan, which skips the heap
-- only for pages the visibility map marks all-visible, and only VACUUM sets those marks. By
-- default autovacuum vacuums an insert-only table after inserts of 20% of its rows: with a
-- month of footage that is the last several days, whose playlists would then read one heap
-- page per few segments (cameras register concurrently, so a camera's rows are spread over
-- the table). Vacuum after every 10,000 inserts instead, whatever the table's size: a run
-- visits only the pages inserted since the last one (500 cameras: every 2 minutes, ~300
-- pages), and only the newest few thousand rows wait for it. Keep in step with ../sqlite/.
ALTER TABLE segments SET (
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0
);
