-- The recorded segment each detection's frame lies in (storage's chain sequence): NULL until
-- linked, 0 when the frame was not recorded (or not linked within an hour).
ALTER TABLE detections ADD COLUMN segment_sequence BIGINT;
CREATE INDEX detections_unlinked ON detections (site, camera, time_us)
    WHERE segment_sequence IS NULL;
