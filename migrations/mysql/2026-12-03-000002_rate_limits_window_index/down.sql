ALTER TABLE rate_limits DROP INDEX rate_limits_window_start, ADD INDEX rate_limits_last_at (last_at);
