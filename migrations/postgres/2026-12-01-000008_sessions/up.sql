-- One row per session (refresh-token family): where and with what it started, and
-- its last use, written with its first token and with each refresh.
CREATE TABLE sessions (
    family_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_client TEXT,
    created_user_agent TEXT,
    last_used_at BIGINT NOT NULL,
    last_client TEXT,
    last_user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
