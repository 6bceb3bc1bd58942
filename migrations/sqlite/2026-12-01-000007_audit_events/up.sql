-- Security events, each written in the transaction of the change it describes.
-- No secrets: who (account, address), when, from where (client, request id), what.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    email TEXT,
    client TEXT,
    request_id TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_email ON audit_events (email, at);
