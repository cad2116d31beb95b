-- Footage grants to and from partner sites, and where an access came from. Keep in step with
-- ../sqlite/.

-- The partner site an access came from (AccessLogEntry.source); '' for local accesses. Hashed
-- after `method` only when non-empty, so entries written before this column verify unchanged.
ALTER TABLE access_log ADD COLUMN source TEXT NOT NULL DEFAULT '';

-- One row per grant. At the owner (owner_site = this site, mirror = 0) it is the grant
-- itself; at the requesting site (mirror = 1) it is the local copy of a grant asked of a
-- partner, refreshed from the owner.
-- state: 1 pending, 2 approved, 3 denied (kordon.storage.v1.FootageGrantState); an approved
-- grant past access_until_us reads as expired (4) without being rewritten.
CREATE TABLE footage_grants (
    id                TEXT    NOT NULL,
    owner_site        TEXT    NOT NULL,
    requesting_site   TEXT    NOT NULL,
    request_id        TEXT    NOT NULL,
    mirror            BIGINT NOT NULL,
    requested_by      TEXT    NOT NULL,
    requested_by_name TEXT    NOT NULL,
    -- JSON array of camera names of owner_site.
    cameras           TEXT    NOT NULL,
    requested_start_us BIGINT NOT NULL,
    requested_end_us  BIGINT NOT NULL,
    -- The approved range (the requested one until decided).
    start_us          BIGINT NOT NULL,
    end_us            BIGINT NOT NULL,
    reason            TEXT    NOT NULL,
    case_id           TEXT    NOT NULL,
    recipient         TEXT    NOT NULL,
    legal_basis       TEXT    NOT NULL,
    form              TEXT    NOT NULL,
    keep_for_us       BIGINT NOT NULL,
    state             BIGINT NOT NULL,
    created_at_us     BIGINT NOT NULL,
    decided_by        TEXT    NOT NULL,
    decided_at_us     BIGINT,
    decision_reason   TEXT    NOT NULL,
    access_until_us   BIGINT,
    bundle_id         TEXT    NOT NULL,
    bundle_sha256     TEXT    NOT NULL,
    bundle_size       BIGINT NOT NULL,
    -- Mirrors: the decision was logged here (FOOTAGE_DECISION, source = owner) once.
    decision_logged   BIGINT NOT NULL,
    PRIMARY KEY (owner_site, id)
);
CREATE UNIQUE INDEX footage_grants_by_request
    ON footage_grants (owner_site, requesting_site, request_id);
CREATE INDEX footage_grants_by_time ON footage_grants (created_at_us);
