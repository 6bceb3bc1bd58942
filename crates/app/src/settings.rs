//! Layered configuration: built-in defaults, `config/default.toml`,
//! `config/<APP_ENVIRONMENT>.toml`, then `APP__SECTION__KEY` variables (a `.env`
//! file is read into the environment first). Keys: docs/configuration.md.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const BUILT_IN: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub data: DataSettings,
    pub database: DatabaseSection,
    pub registration: RegistrationSettings,
    pub otp: OtpSection,
    pub limits: LimitsSection,
    pub jwt: JwtSection,
    pub hashing: HashingSection,
    pub mail: MailSection,
    pub metrics: MetricsSettings,
    pub audit: AuditSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Threads each HTTP worker, and the main runtime, may run blocking work on
    /// (SQLite's statements).
    pub blocking_threads: usize,
    pub shutdown_timeout_seconds: Seconds,
    /// The API page (Swagger UI) at `/docs`.
    pub docs: bool,
    pub cors: CorsSection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CorsSection {
    /// Origins allowed to call the API from a browser; empty: no CORS at all.
    pub allowed_origins: Vec<String>,
    pub max_age_seconds: Seconds,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DataSettings {
    /// Where generated keys and secrets live.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSection {
    pub url: String,
    pub max_connections: usize,
    pub acquire_timeout_seconds: Seconds,
    pub busy_timeout_ms: Millis,
    pub statement_timeout_seconds: Seconds,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicySetting {
    VerificationRequired,
    TokensBeforeVerification,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RegistrationSettings {
    pub policy: PolicySetting,
    /// Whether a mailed code may sign in instead of a password.
    pub sign_in_by_code: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OtpSection {
    pub length: u8,
    pub ttl_seconds: Seconds,
    pub max_attempts: u32,
    /// HMAC key for stored codes; empty: generated into `<data.dir>/otp-secret`.
    #[serde(
        default,
        deserialize_with = "optional_secret",
        serialize_with = "redacted"
    )]
    pub secret: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitsSection {
    /// Wrong code tries per address per window, across codes and purposes.
    pub guess_budget: u32,
    pub guess_window_seconds: Seconds,
    /// One client's share of an address's guess budget, per window.
    pub guess_budget_per_client: u32,
    /// Failed logins per address per window (the ceiling).
    pub login_failures: u32,
    pub login_window_seconds: Seconds,
    /// Failed logins per (address, client), and wrong old passwords per account on
    /// change-password, per window.
    pub login_failures_per_client: u32,
    pub login_client_window_seconds: Seconds,
    /// Least time between two code mails to one address (per purpose).
    pub resend_cooldown_seconds: Seconds,
    /// Most code mails to one address (per purpose) per window.
    pub resend_cap: u32,
    pub resend_window_seconds: Seconds,
    /// Requests per client address and endpoint per window, on unauthenticated endpoints.
    pub client_requests: u32,
    pub client_window_seconds: Seconds,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Lowest zxcvbn score (0-4) of a new password; 0 disables the check.
    pub password_min_score: u8,
    /// How often expired codes and spent limit state are deleted.
    pub purge_interval_seconds: Seconds,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDSA,
    ES256,
    RS256,
    HS256,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JwtSection {
    pub algorithm: JwtAlgorithm,
    /// Ed25519 PKCS#8 PEM; empty: `<data.dir>/jwt-ed25519.pem`, created if missing.
    #[serde(default, deserialize_with = "optional")]
    pub private_key_file: Option<PathBuf>,
    /// HS256 shared secret (at least 32 bytes).
    #[serde(
        default,
        deserialize_with = "optional_secret",
        serialize_with = "redacted"
    )]
    pub secret: Option<SecretString>,
    /// Folder of further keys (`passcode keys`); empty: `<data.dir>/jwt-keys`.
    #[serde(default, deserialize_with = "optional")]
    pub keys_dir: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_seconds: Seconds,
    pub refresh_ttl_seconds: Seconds,
    /// How long a spent refresh token still gets its successor (concurrent refreshes
    /// of one client) before presenting it revokes its family.
    pub refresh_reuse_grace_seconds: Seconds,
    /// The longest a session lasts from its login, however often it is refreshed.
    pub session_max_seconds: Seconds,
    pub leeway_seconds: Seconds,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HashingSection {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes at once; 0 means one per core.
    pub max_concurrent: usize,
    pub max_queued: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    Log,
    File,
    Smtp,
    Http,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsSetting {
    Implicit,
    Starttls,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MailSection {
    pub transport: TransportKind,
    pub from: String,
    pub product_name: String,
    pub file_dir: PathBuf,
    /// Folder of template files replacing the built-in ones; empty for none.
    #[serde(default, deserialize_with = "optional")]
    pub templates_dir: Option<PathBuf>,
    pub outbox: OutboxSection,
    pub smtp: SmtpSection,
    pub http: HttpHookSection,
}

/// `mail.transport = "http"`: each message POSTed, signed, to `url`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpHookSection {
    #[serde(default, deserialize_with = "optional")]
    pub url: Option<String>,
    /// The Standard Webhooks signing secret, `whsec_` + base64.
    #[serde(
        default,
        deserialize_with = "optional_secret",
        serialize_with = "redacted"
    )]
    pub secret: Option<SecretString>,
    pub timeout_seconds: Seconds,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutboxSection {
    /// Messages one instance sends at once.
    pub workers: u32,
    /// Messages one claim takes and one write marks sent.
    pub batch: u32,
    /// Delivery attempts before a message is marked failed.
    pub max_attempts: u32,
    /// How often the worker looks for due messages when idle.
    pub poll_interval_ms: Millis,
    /// How long the worker, once woken by its own instance, waits for more mail
    /// before claiming.
    pub gather_ms: Millis,
    /// How long a claimed message is reserved for its worker.
    pub lease_seconds: Seconds,
    /// First retry delay, doubled after each failure up to `backoff_max_ms`.
    pub backoff_base_ms: Millis,
    pub backoff_max_ms: Millis,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SmtpSection {
    #[serde(default, deserialize_with = "optional")]
    pub host: Option<String>,
    pub port: u16,
    pub tls: TlsSetting,
    #[serde(default, deserialize_with = "optional")]
    pub username: Option<String>,
    #[serde(
        default,
        deserialize_with = "optional_secret",
        serialize_with = "redacted"
    )]
    pub password: Option<SecretString>,
    pub timeout_seconds: Seconds,
    #[serde(default, deserialize_with = "optional")]
    pub ca_file: Option<PathBuf>,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuditSettings {
    /// How long audit events are kept (the purge job deletes older ones).
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricsSettings {
    /// Address for `GET /metrics` (Prometheus), apart from the public port, e.g.
    /// `127.0.0.1:9464`; empty: no metrics listener.
    #[serde(default, deserialize_with = "optional")]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `passcode=debug,actix_web=info`; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Secrets print as whether they are set, never as their value.
fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}

/// An optional value: absent, or an empty string (as an unset environment variable
/// gives), is `None`.
fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|s| !s.is_empty())
        .map(T::from))
}

fn optional_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|s| !s.is_empty())
        .map(SecretString::from))
}

/// A duration configured in whole seconds (the keys ending in `_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// As a `chrono` duration (saturating far beyond any sensible setting).
    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.0).unwrap_or(i64::MAX / 1_000))
    }
}

impl From<u64> for Seconds {
    fn from(seconds: u64) -> Self {
        Self(seconds)
    }
}

/// A duration configured in milliseconds (the keys ending in `_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }

    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::milliseconds(i64::try_from(self.0).unwrap_or(i64::MAX / 1_000))
    }
}

impl From<u64> for Millis {
    fn from(millis: u64) -> Self {
        Self(millis)
    }
}

impl Settings {
    /// Loads the layers from `config_dir` (files there are optional) and the environment.
    pub fn load(config_dir: &Path) -> anyhow::Result<Self> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        let settings = Config::builder()
            .add_source(File::from_str(BUILT_IN, FileFormat::Toml))
            .add_source(File::from(config_dir.join("default.toml")).required(false))
            .add_source(File::from(config_dir.join(format!("{environment}.toml"))).required(false))
            .add_source(
                Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("limits.trusted_proxies")
                    .with_list_parse_key("server.cors.allowed_origins"),
            )
            .build()?;
        Ok(settings.try_deserialize()?)
    }

    /// The built-in defaults alone (what a fresh checkout runs with).
    pub fn defaults() -> anyhow::Result<Self> {
        Ok(Config::builder()
            .add_source(File::from_str(BUILT_IN, FileFormat::Toml))
            .build()?
            .try_deserialize()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_zero_configuration_setup() {
        let settings = Settings::defaults().unwrap();
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.server.port, 8000);
        assert_eq!(settings.database.url, "sqlite://data/passcode.db");
        assert_eq!(settings.mail.transport, TransportKind::Log);
        assert_eq!(settings.jwt.algorithm, JwtAlgorithm::EdDSA);
        assert_eq!(settings.otp.length, 6);
        assert_eq!(settings.otp.ttl_seconds, Seconds(600));
        assert!(settings.otp.secret.is_none(), "optional values are options");
        assert!(settings.mail.smtp.host.is_none());
        assert_eq!(
            settings.registration.policy,
            PolicySetting::VerificationRequired
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut settings = Settings::defaults().unwrap();
        settings.mail.smtp.password = Some(SecretString::from("smtp-pass-123".to_owned()));
        settings.jwt.secret = Some(SecretString::from("jwt-secret-456".to_owned()));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("smtp-pass-123"));
        assert!(!printed.contains("jwt-secret-456"));
        let serialized = serde_json::to_string(&settings).unwrap();
        assert!(!serialized.contains("smtp-pass-123") && serialized.contains("[REDACTED]"));
    }
}
