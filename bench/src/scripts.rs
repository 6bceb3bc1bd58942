//! What each scenario's connections send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::load::{Call, Script};

/// The same request again and again.
pub struct Repeat(pub Call);

impl Script for Repeat {
    fn next(&mut self) -> Option<Call> {
        Some(self.0.clone())
    }
}

/// A cheap request at a steady 200 per second: what a health check or a light client
/// sees while something else loads the service.
pub struct Probe(pub Call);

impl Script for Probe {
    fn next(&mut self) -> Option<Call> {
        Some(self.0.clone())
    }

    fn pause(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(5))
    }
}

/// A wrong code for one address.
pub fn wrong_code(email: &str) -> Box<dyn Script> {
    Box::new(Repeat(Call::post(
        "/api/accounts/validate-otp/",
        json!({"email": email, "otp": "000000"}),
    )))
}

/// A wrong code for one address, each from a new client (IPv4 `10.{connection}.x.y`,
/// named by `X-Forwarded-For` as a trusted proxy would): guessing spread over many
/// clients, which the address's ceiling answers once it is full, each client's share
/// still having room.
pub struct NewClients {
    pub email: String,
    pub connection: u8,
    pub next: u16,
}

impl Script for NewClients {
    fn next(&mut self) -> Option<Call> {
        self.next = self.next.wrapping_add(1);
        let [high, low] = self.next.to_be_bytes();
        let mut call = Call::post(
            "/api/accounts/validate-otp/",
            json!({"email": self.email, "otp": "000000"}),
        );
        call.forwarded_for = Some(format!("10.{}.{high}.{low}", self.connection));
        Some(call)
    }
}

pub fn login(email: &str, password: &str) -> Box<dyn Script> {
    Box::new(Repeat(Call::post(
        "/api/accounts/token/",
        json!({"email": email, "password": password}),
    )))
}

/// Refreshes with the newest refresh token it was given: a service that rotates hands
/// out a new one with every answer, and the chain follows it.
pub struct RefreshChain {
    pub token: String,
}

impl Script for RefreshChain {
    fn next(&mut self) -> Option<Call> {
        Some(Call::post(
            "/api/accounts/token/refresh/",
            json!({"refresh": self.token}),
        ))
    }

    fn answered(&mut self, status: u16, body: &[u8], _at: SystemTime) {
        if status == 200
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(next) = value
                .get("refresh")
                .or_else(|| value.pointer("/token/refresh"))
                .and_then(|v| v.as_str())
        {
            self.token = next.to_owned();
        }
    }
}

/// resend-otp for a new address with every request: an address without an account,
/// answered as any other (a decoy written with the address's send limit counted).
pub struct ResendNew {
    pub prefix: String,
    pub next: u64,
}

impl Script for ResendNew {
    fn next(&mut self) -> Option<Call> {
        self.next += 1;
        Some(Call::post(
            "/api/accounts/resend-otp/",
            json!({"email": format!("{}-{}@bench.example.com", self.prefix, self.next)}),
        ))
    }
}

/// resend-otp for each of some addresses in turn: each request replaces that address's
/// open code (with the resend cooldown off), so it writes the rows a wrong code for
/// the same address reads and counts its try on.
pub struct ResendTo {
    pub emails: Vec<String>,
    pub next: usize,
}

impl Script for ResendTo {
    fn next(&mut self) -> Option<Call> {
        let email = self.emails.get(self.next % self.emails.len().max(1))?;
        self.next += 1;
        Some(Call::post(
            "/api/accounts/resend-otp/",
            json!({"email": email}),
        ))
    }
}

/// Another script, paced: a pause before each of its requests, so that two rows whose
/// requests cost differently send them at the same rate.
pub struct Paced(pub Box<dyn Script>, pub Duration);

impl Script for Paced {
    fn next(&mut self) -> Option<Call> {
        self.0.next()
    }

    fn pause(&self) -> Option<Duration> {
        Some(self.1)
    }

    fn answered(&mut self, status: u16, body: &[u8], at: SystemTime) {
        self.0.answered(status, body, at);
    }
}

/// When each registration was answered, by address (to time its mail).
pub type Answered = Arc<Mutex<HashMap<String, SystemTime>>>;

/// A new address with every request.
pub struct Register {
    pub prefix: String,
    pub next: u64,
    pub last: String,
    pub answered: Answered,
}

impl Script for Register {
    fn next(&mut self) -> Option<Call> {
        self.next += 1;
        self.last = format!("{}-{}@bench.example.com", self.prefix, self.next);
        Some(Call::post(
            "/api/accounts/create/",
            json!({"email": self.last, "full_name": "Bench User", "password": crate::PASSWORD}),
        ))
    }

    fn answered(&mut self, status: u16, _body: &[u8], at: SystemTime) {
        if (200..300).contains(&status)
            && let Ok(mut answered) = self.answered.lock()
        {
            answered.insert(self.last.clone(), at);
        }
    }
}

/// Prepared requests, each sent once (a right code, a taken address's registration),
/// taken from a stack the connections share; once it is empty, the connection ends,
/// and the row is measured up to its last answer (`load::run`). The warm-up takes a
/// quarter of them at most, then sends `/health/live` until it ends.
pub struct Once {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Left for the measured interval.
    reserve: usize,
    warmed_up: Instant,
}

impl Once {
    pub fn new(calls: Arc<Mutex<Vec<Call>>>, warmup: Duration) -> Self {
        let reserve = calls
            .lock()
            .map_or(0, |calls| calls.len() - calls.len() / 4);
        Self {
            calls,
            reserve,
            warmed_up: Instant::now() + warmup,
        }
    }
}

impl Script for Once {
    fn next(&mut self) -> Option<Call> {
        let mut calls = self.calls.lock().ok()?;
        if calls.len() <= self.reserve && Instant::now() < self.warmed_up {
            return Some(Call::get("/health/live"));
        }
        calls.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::{Arc, Duration, Mutex, Once, Script as _};
    use crate::load::Call;

    fn paths(once: &mut Once, n: usize) -> Vec<Option<String>> {
        (0..n).map(|_| once.next().map(|call| call.path)).collect()
    }

    #[test]
    fn the_warm_up_takes_a_quarter_of_the_calls_and_the_rest_end_the_connection() {
        let calls = || {
            let calls = (0..8).map(|i| Call::get(&format!("/{i}"))).collect();
            Arc::new(Mutex::new(calls))
        };
        let mut warming = Once::new(calls(), Duration::from_secs(3600));
        let health = Some("/health/live".to_owned());
        assert_eq!(
            paths(&mut warming, 4),
            [Some("/7".into()), Some("/6".into()), health.clone(), health]
        );
        let mut measured = Once::new(calls(), Duration::ZERO);
        let sent = paths(&mut measured, 9);
        assert!(sent[..8].iter().all(Option::is_some), "{sent:?}");
        assert_eq!(sent[8], None, "nothing left: the connection ends");
    }
}
