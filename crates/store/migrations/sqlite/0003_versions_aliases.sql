-- Published versions (immutable snapshots of $LATEST) and aliases.
ALTER TABLE functions ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE versions (
    name    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    config  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE aliases (
    name   TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    alias  TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
