-- Provisioned concurrency configurations, per function version or alias.
CREATE TABLE provisioned_concurrency (
    name          TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    requested     INTEGER NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);
