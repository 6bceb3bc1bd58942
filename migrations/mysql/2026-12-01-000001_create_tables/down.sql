DROP TABLE sessions;
DROP TABLE audit_events;
DROP TABLE refresh_tokens;
DROP TABLE outbox;
DROP TABLE rate_limits;
DROP TABLE otp_codes;
DROP TABLE users;
