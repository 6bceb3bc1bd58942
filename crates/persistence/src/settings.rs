//! Connection settings.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (or a bare path).
    pub url: String,
    pub max_connections: usize,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database before giving up.
    pub busy_timeout: Duration,
}

impl DatabaseSettings {
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Self {
        Self {
            url: format!("sqlite://{}", path.as_ref().display()),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}
