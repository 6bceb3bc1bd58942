//! Connection settings.

use std::time::Duration;

use crate::cipher::MailKey;

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (or a bare path), or `postgres://user@host:port/db`.
    pub url: String,
    pub max_connections: usize,
    /// PostgreSQL and MariaDB: the connections split into this many groups, one per
    /// HTTP worker thread (`affinity`), at most one per connection; 1 lends any to
    /// any thread.
    pub groups: usize,
    /// How long a request waits for a pooled connection (or to open one) before 503.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database before giving up.
    pub busy_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every connection.
    pub statement_timeout: Duration,
    /// Seals queued mail bodies at rest; instances sharing a database need the same
    /// key (`MailKey::derive` from the shared code secret).
    pub mail_key: MailKey,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            groups: 1,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            mail_key: MailKey::random(),
        }
    }

    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Self {
        Self::new(format!("sqlite://{}", path.as_ref().display()))
    }
}
