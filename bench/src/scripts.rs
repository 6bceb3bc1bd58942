//! What each scenario's connections send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::json;

use crate::load::{Call, Script};

/// The same request again and again.
pub struct Repeat(pub Call);

impl Script for Repeat {
    fn next(&mut self) -> Call {
        self.0.clone()
    }
}

/// A cheap request at a steady 200 per second: what a health check or a light client
/// sees while something else loads the service.
pub struct Probe(pub Call);

impl Script for Probe {
    fn next(&mut self) -> Call {
        self.0.clone()
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
    fn next(&mut self) -> Call {
        self.next = self.next.wrapping_add(1);
        let [high, low] = self.next.to_be_bytes();
        let mut call = Call::post(
            "/api/accounts/validate-otp/",
            json!({"email": self.email, "otp": "000000"}),
        );
        call.forwarded_for = Some(format!("10.{}.{high}.{low}", self.connection));
        call
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
    fn next(&mut self) -> Call {
        Call::post(
            "/api/accounts/token/refresh/",
            json!({"refresh": self.token}),
        )
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
    fn next(&mut self) -> Call {
        self.next += 1;
        Call::post(
            "/api/accounts/resend-otp/",
            json!({"email": format!("{}-{}@bench.example.com", self.prefix, self.next)}),
        )
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
    fn next(&mut self) -> Call {
        self.next += 1;
        self.last = format!("{}-{}@bench.example.com", self.prefix, self.next);
        Call::post(
            "/api/accounts/create/",
            json!({"email": self.last, "full_name": "Bench User", "password": crate::PASSWORD}),
        )
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
/// taken from a stack the connections share; once it is empty, the last one again
/// (a code spent, an address in its send cooldown: answered 4xx).
pub struct Once {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub last: Option<Call>,
}

impl Script for Once {
    fn next(&mut self) -> Call {
        if let Some(call) = self.calls.lock().ok().and_then(|mut calls| calls.pop()) {
            self.last = Some(call);
        }
        self.last
            .clone()
            .unwrap_or_else(|| Call::get("/health/live"))
    }
}
