-- Functions: one row per function; `config` is the JSON of its $LATEST FunctionConfig.
CREATE TABLE functions (
    name        TEXT PRIMARY KEY NOT NULL,
    revision_id TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size   INTEGER NOT NULL,
    config      TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
