-- Async events are claimed by a node with a lease: the node renews it while it delivers;
-- when the node dies the lease runs out and any node may deliver the event again.
ALTER TABLE async_events ADD COLUMN lease_owner TEXT;
ALTER TABLE async_events ADD COLUMN lease_until_ms INTEGER;
CREATE INDEX async_events_leases ON async_events (inflight, lease_until_ms);
