-- Rules (from the config: managed = 1; from the API: managed = 0), stored as the proto.
CREATE TABLE rules (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    managed INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (site, name)
);

-- Alerts: the proto in body, the columns lists filter and sort on.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    camera TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    state INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    partner INTEGER NOT NULL,
    opened_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    ended_us INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX alerts_opened ON alerts (opened_us, id);
CREATE INDEX alerts_incident ON alerts (rule_id, dedup_key, last_seen_us);
CREATE INDEX alerts_ongoing ON alerts (ended_us);

-- Every alert event in order: the WatchAlerts cursor and the delivery queues point here.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    time_us INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX events_time ON events (time_us);

-- Per sink, the events still to deliver, in seq order.
CREATE TABLE deliveries (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_us INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);

-- Deliveries that ran out of attempts (or were refused for good), with the reason.
CREATE TABLE dead_letters (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    failed_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
);

-- How far each detection source was read (resume point after a restart).
CREATE TABLE watermarks (
    source TEXT PRIMARY KEY,
    time_us INTEGER NOT NULL
);
