//! Black-box tests: the real app on a port, a real HTTP client, real SMTP servers.
// Test code: a failed expectation is a failed test, and tests may read the wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod abuse;
mod accounts;
mod bad_input;
mod cli;
mod concurrency;
mod contract;
mod flow;
mod hardening;
mod helpers;
mod instances;
mod mail_hook;
mod operations;
mod otp;
mod outbox;
mod policy;
mod recovery;
mod sessions;
mod timing;
mod token_attacks;
mod tokens;
