-- Scheduling settings beside each function; changing them does not change its revision.
ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;
ALTER TABLE functions ADD COLUMN keep_alive_s INTEGER;
