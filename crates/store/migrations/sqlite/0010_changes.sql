-- The change feed: one row per change of a function, so other nodes drop what they cached
-- of it (they are also told at once; this catches what they missed).
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);
