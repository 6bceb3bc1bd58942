CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT,
    revoked_at BIGINT,
    successor_access_jti TEXT,
    successor_refresh_jti TEXT,
    successor_issued_at BIGINT,
    created_at BIGINT NOT NULL,
    family_expires_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, spent_at, revoked_at,
    successor_access_jti, successor_refresh_jti, successor_issued_at, created_at, family_expires_at)
SELECT previous_hash, family_id, user_id, previous_spent_at, previous_spent_at, revoked_at,
    access_jti, refresh_jti, issued_at, created_at, family_expires_at
FROM sessions WHERE previous_hash IS NOT NULL;
INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, revoked_at, created_at,
    family_expires_at)
SELECT token_hash, family_id, user_id, expires_at, revoked_at, last_used_at, family_expires_at
FROM sessions WHERE token_hash IS NOT NULL;
ALTER TABLE sessions DROP COLUMN token_hash;
ALTER TABLE sessions DROP COLUMN expires_at;
ALTER TABLE sessions DROP COLUMN family_expires_at;
ALTER TABLE sessions DROP COLUMN access_jti;
ALTER TABLE sessions DROP COLUMN refresh_jti;
ALTER TABLE sessions DROP COLUMN issued_at;
ALTER TABLE sessions DROP COLUMN previous_hash;
ALTER TABLE sessions DROP COLUMN previous_spent_at;
ALTER TABLE sessions DROP COLUMN revoked_at;
