-- Shared rate limits (guessing budget, resend cooldown and cap, per-client limits):
-- one row per bucket, changed only by single conditional statements.
CREATE TABLE rate_limits (
    bucket TEXT PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    count INTEGER NOT NULL,
    last_at BIGINT NOT NULL
);
CREATE INDEX rate_limits_last_at ON rate_limits (last_at);
CREATE INDEX otp_codes_expires_at ON otp_codes (expires_at);
