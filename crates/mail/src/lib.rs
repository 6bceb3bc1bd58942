//! Mail for passcode (lettre): renders the domain's messages as multipart
//! plain text + HTML and delivers them over SMTP, into `.eml` files, or to the log.

mod hook;
mod render;
mod settings;
mod smtp;
mod transport;

pub use hook::{HookSettings, signature, signing_key};
pub use render::{Rendered, Renderer};
pub use settings::{MailSettings, SmtpSettings, SmtpTls, TransportSettings};
pub use transport::LettreMailer;
