-- Async (Event) invocations waiting for delivery, their dead letters, and per-qualifier
-- retry/destination settings.
CREATE TABLE async_events (
    id              TEXT PRIMARY KEY NOT NULL,
    function        TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier       TEXT,
    payload         BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    enqueued_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    inflight        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX async_events_due ON async_events (inflight, next_attempt_at);
CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY NOT NULL,
    function    TEXT NOT NULL,
    qualifier   TEXT,
    payload     BLOB NOT NULL,
    condition   TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    error       TEXT,
    enqueued_at INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL
);
CREATE TABLE event_invoke_configs (
    name      TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier TEXT NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);
