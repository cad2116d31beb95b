-- What the transcode service needs of storage, SQLite. Keep in step with ../postgres/.

-- A rendition's init section size (the offset of its first moof box): its EXT-X-MAP in HLS
-- playlists. 0 on rows registered before it was recorded; playlists skip those.
ALTER TABLE renditions ADD COLUMN init_size INTEGER NOT NULL DEFAULT 0;

-- An evidence bundle's viewer-copy rendering as JSON (`crate::evidence::Rendering`); '' for
-- bundles of originals only, which every bundle made before this column is.
ALTER TABLE evidence_bundles ADD COLUMN rendering TEXT NOT NULL DEFAULT '';
