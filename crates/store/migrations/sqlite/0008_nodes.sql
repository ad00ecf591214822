-- Cluster membership: each node's record, rewritten at every heartbeat. Times are the
-- database's clock (ms since the epoch), so nodes' clocks need not agree.
CREATE TABLE nodes (
    id             TEXT PRIMARY KEY NOT NULL,
    address        TEXT NOT NULL,
    version        TEXT NOT NULL,
    started_ms     INTEGER NOT NULL,
    heartbeat_ms   INTEGER NOT NULL,
    live_instances INTEGER NOT NULL,
    busy_instances INTEGER NOT NULL
);
