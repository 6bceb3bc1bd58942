-- Each registration keeps its own verification code, carrying the name and password
-- (hash) that entering it puts into effect: several codes per address and purpose.
CREATE TABLE otp_codes_new (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_hash BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    consumed_at BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    full_name TEXT,
    password_hash TEXT
);
INSERT INTO otp_codes_new (id, email, purpose, code_hash, attempts, consumed_at, created_at, expires_at)
    SELECT id, email, purpose, code_hash, attempts, consumed_at, created_at, expires_at FROM otp_codes;
DROP TABLE otp_codes;
ALTER TABLE otp_codes_new RENAME TO otp_codes;
CREATE INDEX otp_codes_address ON otp_codes (email, purpose);
CREATE INDEX otp_codes_expires_at ON otp_codes (expires_at);
-- The code a queued message carries: its mail is dropped when the code is replaced.
ALTER TABLE outbox ADD COLUMN otp_id TEXT;
CREATE INDEX outbox_otp ON outbox (otp_id);
-- A session's absolute end, inherited by every refresh of its family.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at BIGINT;
