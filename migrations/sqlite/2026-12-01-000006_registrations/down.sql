DROP INDEX outbox_otp;
ALTER TABLE outbox DROP COLUMN otp_id;
ALTER TABLE refresh_tokens DROP COLUMN family_expires_at;
DROP INDEX otp_codes_address;
ALTER TABLE otp_codes DROP COLUMN full_name;
ALTER TABLE otp_codes DROP COLUMN password_hash;
CREATE UNIQUE INDEX otp_codes_email_purpose ON otp_codes (email, purpose);
