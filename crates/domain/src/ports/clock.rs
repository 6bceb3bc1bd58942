//! Time as an input: the domain never reads the wall clock itself.

use chrono::{DateTime, Utc};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant. Infallible.
    fn now(&self) -> DateTime<Utc>;
}
