-- Refresh tokens by SHA-256 of the token, in families. A spent token records the ids
-- of its successor, so a concurrent refresh within the grace window gets the same pair.
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
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
