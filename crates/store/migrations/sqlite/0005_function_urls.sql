-- Function URLs (HTTP triggers); qualifier '' is the unqualified function.
CREATE TABLE function_urls (
    name      TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier TEXT NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (name, qualifier)
);
