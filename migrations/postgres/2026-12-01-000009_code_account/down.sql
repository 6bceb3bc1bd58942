ALTER TABLE otp_codes DROP COLUMN user_id;
