-- Schedules: a function invoked asynchronously at each fire of a cron or rate expression.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY NOT NULL,
    function     TEXT NOT NULL,
    config       TEXT NOT NULL,
    next_fire_ms INTEGER
);
