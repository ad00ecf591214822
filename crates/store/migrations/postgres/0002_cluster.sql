-- Cluster membership: each node's record, rewritten at every heartbeat. Times are the
-- database's clock (ms since the epoch), so nodes' clocks need not agree.
CREATE TABLE nodes (
    id             TEXT COLLATE "C" PRIMARY KEY,
    address        TEXT NOT NULL,
    version        TEXT NOT NULL,
    started_ms     BIGINT NOT NULL,
    heartbeat_ms   BIGINT NOT NULL,
    live_instances BIGINT NOT NULL,
    busy_instances BIGINT NOT NULL
);

-- Async events are claimed by a node with a lease: the node renews it while it delivers;
-- when the node dies the lease runs out and any node may deliver the event again.
ALTER TABLE async_events ADD COLUMN lease_owner TEXT COLLATE "C", ADD COLUMN lease_until_ms BIGINT;
CREATE INDEX async_events_leases ON async_events (lease_until_ms) WHERE inflight;

-- The change feed: one row per change of a function, so other nodes drop what they cached.
CREATE TABLE changes (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    function TEXT COLLATE "C" NOT NULL,
    at_ms    BIGINT NOT NULL
);
