//! The clock adapter: the one place passcode reads the wall clock (clippy's
//! `disallowed-methods` refuses `Utc::now` and `SystemTime::now` anywhere else).

use chrono::{DateTime, Utc};
use passcode_domain::ports::Clock;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The clock adapter itself.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
