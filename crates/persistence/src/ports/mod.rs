//! The port implementations, one module per port, each written once in Diesel's query
//! builder and instantiated for each backend's store by a macro (the SQL is the same;
//! the connection types differ). Where a backend differs, it says so where it lives:
//! the outbox's claim statement is a parameter, each backend's guess transaction
//! (`sqlite.rs`, `postgres.rs`) is its own, and so are a new code's writes and a
//! spend without an account change (a registration's completion, a sign-in) on SQLite
//! (one trip) and PostgreSQL (pipelined), where MariaDB runs `code_writes!`.
//!
//! A backend module defines `type Conn` and a store with
//! `async fn conn(&self) -> Result<impl DerefMut<Target = Conn>, InfraError>` for reads
//! and `writer()`, of the same type, for anything that writes: on SQLite, where the
//! database has one writer at a time, writers take turns in memory rather than in
//! SQLite's busy handler, which polls with sleeps of up to 100 ms. `writer_at_once()`
//! answers `None` where `writer()` would wait. It then invokes `shared!()` and one
//! macro per port.

mod audit;
mod dialect;
mod health;
mod otps;
mod outbox;
mod refresh_tokens;
mod shared;
pub(crate) mod throttle;
mod users;

pub(crate) use audit::audit_log;
pub(crate) use dialect::returning_dialect;
pub(crate) use health::health_check;
pub(crate) use otps::{change_writes, code_writes, otp_store};
pub(crate) use outbox::outbox;
#[cfg(test)]
pub(crate) use refresh_tokens::check_a_losing_logout_of_all_ends_nothing;
pub(crate) use refresh_tokens::{insert_session, logout, refresh_token_store, rotate_session};
pub(crate) use shared::shared;
pub(crate) use throttle::throttle;
pub(crate) use users::{create_user, user_repository};
