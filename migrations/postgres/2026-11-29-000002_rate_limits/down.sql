DROP INDEX otp_codes_expires_at;
DROP TABLE rate_limits;
