//! The passcode application: configuration, wiring of the adapters into the domain,
//! and the HTTP server. `main.rs` is only the CLI on top of this.

mod adapters;
pub mod check;
mod clock;
mod commands;
mod give_back;
mod metrics;
mod secrets;
pub mod settings;
mod startup;
pub mod telemetry;
mod waking;
mod worker;

pub use commands::{
    KeysAction, audit, delete_user, keys, mail_queue, mail_test, migrate, record_keys_rotated,
    set_user_active,
};
pub use settings::Settings;
pub use startup::{Application, Builder, Storage};
