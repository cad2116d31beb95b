-- What the transcode service needs of storage, PostgreSQL. Keep in step with ../sqlite/.

-- A rendition's init section size (the offset of its first moof box): its EXT-X-MAP in HLS
-- playlists. 0 on rows registered before it was recorded; playlists skip those.
ALTER TABLE renditions ADD COLUMN init_size BIGINT NOT NULL DEFAULT 0;

-- An evidence bundle's viewer-copy rendering as JSON (`crate::evidence::Rendering`); '' for
-- bundles of originals only, which every bundle made before this column is.
ALTER TABLE evidence_bundles ADD COLUMN rendering TEXT NOT NULL DEFAULT '';
