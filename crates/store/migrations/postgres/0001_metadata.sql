-- The metadata schema on PostgreSQL: the tables of SQLite's migrations 0001-0007, in one step.
-- Keys are COLLATE "C" so they compare byte by byte, as SQLite's BINARY collation does:
-- listings then page in the same order on both backends, whatever the database's locale.
-- Configurations are JSON kept as text, byte for byte what SQLite keeps; the fields the
-- queries test (an alias's revision, a version's code) have columns of their own instead of
-- being read out of the JSON.

-- Functions: one row per function; `config` is the JSON of its $LATEST FunctionConfig.
-- Scheduling settings sit beside it (changing them does not change its revision), and
-- `last_version` is the highest version number ever given, so numbers are never reused.
CREATE TABLE functions (
    name                 TEXT COLLATE "C" PRIMARY KEY,
    revision_id          TEXT NOT NULL,
    code_sha256          TEXT NOT NULL,
    code_size            BIGINT NOT NULL,
    config               TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    reserved_concurrency BIGINT,
    keep_alive_s         BIGINT,
    last_version         BIGINT NOT NULL DEFAULT 0
);

-- Published versions (immutable snapshots of $LATEST) and aliases.
CREATE TABLE versions (
    name        TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    code_sha256 TEXT NOT NULL,
    config      TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE aliases (
    name        TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    alias       TEXT COLLATE "C" NOT NULL,
    revision_id TEXT NOT NULL,
    config      TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);

-- Provisioned concurrency configurations, per function version or alias.
CREATE TABLE provisioned_concurrency (
    name          TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier     TEXT COLLATE "C" NOT NULL,
    requested     BIGINT NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);

-- Function URLs (HTTP triggers); qualifier '' is the unqualified function.
CREATE TABLE function_urls (
    name      TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier TEXT COLLATE "C" NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);

-- Async (Event) invocations waiting for delivery. `seq` orders events due at the same
-- millisecond first come, first served (SQLite's rowid). Error texts are UTF-8 bytes, not
-- TEXT: a function's error may hold a NUL, which PostgreSQL's TEXT refuses.
CREATE TABLE async_events (
    id              TEXT COLLATE "C" PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    function        TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier       TEXT,
    payload         BYTEA NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    enqueued_at     BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    inflight        BOOLEAN NOT NULL DEFAULT FALSE,
    last_error      BYTEA
);
CREATE INDEX async_events_due ON async_events (next_attempt_at, seq) WHERE NOT inflight;

-- Events given up, until redriven or deleted.
CREATE TABLE dead_letters (
    id          TEXT COLLATE "C" PRIMARY KEY,
    function    TEXT COLLATE "C" NOT NULL,
    qualifier   TEXT,
    payload     BYTEA NOT NULL,
    condition   TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    error       BYTEA,
    enqueued_at BIGINT NOT NULL,
    failed_at   BIGINT NOT NULL
);

-- Retry and destination settings per function and qualifier ('' for none).
CREATE TABLE event_invoke_configs (
    name      TEXT COLLATE "C" NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier TEXT COLLATE "C" NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);

-- Schedules: a function (`name` or `name:qualifier`) invoked asynchronously at each fire of
-- a cron or rate expression.
CREATE TABLE schedules (
    name         TEXT COLLATE "C" PRIMARY KEY,
    function     TEXT COLLATE "C" NOT NULL,
    config       TEXT NOT NULL,
    next_fire_ms BIGINT
);
