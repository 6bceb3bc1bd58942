-- The purge finds ended limits by the start of their window instead of their last use.
-- `last_at` changes on every counted request, so its index made every count rewrite
-- that index (and, on PostgreSQL, kept the update from being a heap-only one);
-- `window_start` changes only when a window starts again. A limit's last use is never
-- before its window's start, so every row the purge deletes is found by this index.
DROP INDEX rate_limits_last_at;
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);
