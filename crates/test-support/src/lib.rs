//! What passcode's test suites share: a PostgreSQL test database that drops itself,
//! the real app on a free port, a typed client with one method per endpoint, real SMTP
//! servers (aiosmtpd) and a reader for the mail they capture, and the tests' Python
//! tools. `scripts/test.sh` sets up what these need.
// Test set-up: a failed expectation is a failed test, and tests may read the wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod app;
mod client;
mod database;
mod hold;
mod mail;
mod python;
mod smtp;

pub use app::{
    Backend, Mail, TestApp, backend, backend_name, server_database, spawn_app, spawn_app_with,
    start_instance, start_instance_with_metrics,
};
pub use client::{PASSWORD, json_of, paths, wait_until_ready};
pub use database::{OwnServer, TestDatabase};
pub use hold::DatabaseConnection;
pub use mail::{CapturedMail, mails_in, parse_mail};
pub use python::{spawn_support, support_file, test_python, venv_tool};
pub use smtp::{ControlledSmtp, SMTP_PASSWORD, SMTP_USER, SmtpServers, smtp};

/// Asks `probe` every `every` until it answers `Ok`, and returns that; fails the test
/// with its last `Err` (what it saw) if 10 s pass first.
pub(crate) async fn within_10s<T>(
    every: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) => assert!(std::time::Instant::now() < deadline, "{seen}, after 10 s"),
        }
        tokio::time::sleep(every).await;
    }
}

/// A port nothing listens on (yet), never handed out twice in this process, and below
/// the kernel's range of ephemeral ports. A port from `bind(0)` lies inside that range,
/// where any outgoing connection may take it as its local port (or a client retrying
/// a server that is still down may connect to itself on it) before the test starts
/// its server there: that server then cannot bind, and the test fails for nothing.
pub fn closed_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(LOWEST + 1_000);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1_000 {
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        let random = u16::from_le_bytes([bytes[0], bytes[1]]);
        let port = LOWEST + random % (ephemeral - LOWEST);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port below the ephemeral range ({LOWEST} to {ephemeral})")
}

/// A fresh address for one test.
pub fn unique_email() -> String {
    format!("user-{}@example.com", unique_suffix())
}

/// Unique within this machine: time, process and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
