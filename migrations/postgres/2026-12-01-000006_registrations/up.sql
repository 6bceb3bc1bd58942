-- Each registration keeps its own verification code, carrying the name and password
-- (hash) that entering it puts into effect: several codes per address and purpose.
ALTER TABLE otp_codes DROP CONSTRAINT otp_codes_email_purpose_key;
ALTER TABLE otp_codes ADD COLUMN full_name TEXT, ADD COLUMN password_hash TEXT;
CREATE INDEX otp_codes_address ON otp_codes (email, purpose);
-- The code a queued message carries: its mail is dropped when the code is replaced.
ALTER TABLE outbox ADD COLUMN otp_id TEXT;
CREATE INDEX outbox_otp ON outbox (otp_id);
-- A session's absolute end, inherited by every refresh of its family.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at BIGINT;
