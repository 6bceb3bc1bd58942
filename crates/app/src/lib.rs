//! The passcode application: configuration, wiring of the adapters into the domain,
//! and the HTTP server. `main.rs` is only the CLI on top of this.

mod secrets;
pub mod settings;
mod startup;
pub mod telemetry;
mod worker;

pub use settings::Settings;
pub use startup::{Application, migrate};
