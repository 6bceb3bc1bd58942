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
mod mail;
mod python;
mod smtp;

pub use app::{
    Backend, Mail, TestApp, backend, backend_name, server_database, spawn_app, spawn_app_with,
    start_instance, start_instance_with_metrics,
};
pub use client::{PASSWORD, json_of, paths, wait_until_ready};
pub use database::{OwnServer, TestDatabase};
pub use mail::{CapturedMail, mails_in, parse_mail};
pub use python::{spawn_support, support_file, test_python, venv_tool};
pub use smtp::{ControlledSmtp, SMTP_PASSWORD, SMTP_USER, SmtpServers, smtp};

/// A port nothing listens on (yet).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
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
