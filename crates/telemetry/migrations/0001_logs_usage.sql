-- Invocation logs (one row per invocation: START … REPORT) and daily usage per function.
CREATE TABLE invocation_logs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    function   TEXT NOT NULL,
    version    TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    text       TEXT NOT NULL
);
CREATE INDEX invocation_logs_function ON invocation_logs (function, at_ms);
CREATE INDEX invocation_logs_request ON invocation_logs (request_id);
CREATE TABLE usage_daily (
    function       TEXT NOT NULL,
    day            TEXT NOT NULL,
    requests       INTEGER NOT NULL,
    billed_mb_ms   INTEGER NOT NULL,
    init_mb_ms     INTEGER NOT NULL,
    PRIMARY KEY (function, day)
);
