//! Diesel (diesel-async) persistence for passcode: the user repository and the
//! code store. SQLite today, through `SyncConnectionWrapper` on a deadpool pool.

mod error;
mod schema;
mod settings;
pub mod sqlite;
mod time;

pub use settings::DatabaseSettings;
pub use sqlite::SqliteStore;
