//! Mail configuration.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The `From` mailbox, e.g. `passcode <no-reply@example.com>`.
    pub from: String,
    /// The product name shown in messages.
    pub product_name: String,
    /// A folder whose `<name>.txt` / `<name>.html` files replace the built-in templates.
    pub templates_dir: Option<PathBuf>,
    pub transport: TransportSettings,
}

#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// Prints each message to the log. For development only: codes appear in the log.
    Log,
    /// Writes each message as an `.eml` file into `dir`.
    File {
        dir: PathBuf,
    },
    Smtp(SmtpSettings),
    /// POSTs each message, signed, to an HTTP endpoint (the mail hook).
    Http(crate::HookSettings),
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte ("SMTPS", port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// No encryption: only for a relay on the same host or a trusted network.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Connect and command timeout.
    pub timeout: Duration,
    /// Extra PEM root certificate(s) to trust, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// Connections kept open to the server.
    pub pool_size: u32,
}
