-- Every object belongs to exactly one record: a key is never shared between segments,
-- renditions or snapshots (within a table enforced here; across tables checked on
-- registration), so deleting one record's object can never remove another's.
CREATE UNIQUE INDEX segments_by_object ON segments (object_key);
CREATE UNIQUE INDEX renditions_by_object ON renditions (object_key);
CREATE UNIQUE INDEX snapshots_by_key ON snapshots (object_key);
