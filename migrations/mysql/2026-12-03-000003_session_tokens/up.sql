-- One row per session holds its live refresh token (SHA-256) and the token it
-- replaced, with the ids of the pair that replacement issued (for a replay within
-- the grace window). A refresh rewrites that row in place instead of inserting a row
-- per token: one updated row, no index entry (on PostgreSQL a heap-only update), where
-- a token row cost a heap insert and three index inserts. An older token of a session
-- is recognised by the session id signed into it (docs/tokens.md).
ALTER TABLE sessions ADD COLUMN token_hash VARBINARY(64);
ALTER TABLE sessions ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN family_expires_at BIGINT;
ALTER TABLE sessions ADD COLUMN access_jti TEXT;
ALTER TABLE sessions ADD COLUMN refresh_jti TEXT;
ALTER TABLE sessions ADD COLUMN issued_at BIGINT;
ALTER TABLE sessions ADD COLUMN previous_hash VARBINARY(64);
ALTER TABLE sessions ADD COLUMN previous_spent_at BIGINT;
ALTER TABLE sessions ADD COLUMN revoked_at BIGINT;
-- A family's tokens were revoked together, and none was added to it after.
UPDATE sessions SET
    token_hash = (SELECT t.token_hash FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NULL
        ORDER BY t.created_at DESC LIMIT 1),
    expires_at = COALESCE((SELECT MAX(t.expires_at) FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NULL), 0),
    family_expires_at = (SELECT MAX(t.family_expires_at) FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id),
    revoked_at = (SELECT MAX(t.revoked_at) FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id),
    previous_hash = (SELECT t.token_hash FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NOT NULL
        ORDER BY t.spent_at DESC LIMIT 1),
    previous_spent_at = (SELECT MAX(t.spent_at) FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id),
    access_jti = (SELECT t.successor_access_jti FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NOT NULL
        ORDER BY t.spent_at DESC LIMIT 1),
    refresh_jti = (SELECT t.successor_refresh_jti FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NOT NULL
        ORDER BY t.spent_at DESC LIMIT 1),
    issued_at = (SELECT t.successor_issued_at FROM refresh_tokens t
        WHERE t.family_id = sessions.family_id AND t.spent_at IS NOT NULL
        ORDER BY t.spent_at DESC LIMIT 1);
DROP TABLE refresh_tokens;
