-- Tokens issued before this (Unix ms) are refused: set when the password changes.
ALTER TABLE users ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;
