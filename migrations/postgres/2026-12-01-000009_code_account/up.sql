-- The account a code was issued to (an address change's code goes to the new address).
ALTER TABLE otp_codes ADD COLUMN user_id TEXT;
