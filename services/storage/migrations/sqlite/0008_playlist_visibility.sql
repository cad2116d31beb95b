-- Nothing to do on SQLite: its segments_live_by_start (0002) holds every column a playlist
-- reads, and SQLite has no visibility map. The PostgreSQL migration of this number has
-- autovacuum keep that index's scans index-only. Keep in step with ../postgres/.
SELECT 1;
