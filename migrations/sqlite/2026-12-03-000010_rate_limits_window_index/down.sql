DROP INDEX rate_limits_window_start;
CREATE INDEX rate_limits_last_at ON rate_limits (last_at);
