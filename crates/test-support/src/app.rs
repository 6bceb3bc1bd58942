//! The real app on a free port, with test settings, on the backend the suite runs on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use passcode_app::settings::{TlsSetting, TransportKind};
use passcode_app::{Application, Settings};
use passcode_domain::ports::{OutboxEntry, OutboxStatus};
use passcode_persistence::{DatabaseSettings, Store};
use secrecy::SecretString;

use crate::database::TestDatabase;
use crate::smtp::{SMTP_PASSWORD, SMTP_USER, smtp};

/// How the app reaches the mail server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mail {
    Starttls,
    Implicit,
    /// SMTP configured to a port where nothing listens.
    Down,
}

/// The database the suite runs on: `PASSCODE_TEST_BACKEND=postgres`, `mariadb`, or SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

pub fn backend() -> Backend {
    match std::env::var("PASSCODE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("mariadb") => Backend::Mariadb,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("PASSCODE_TEST_BACKEND={other:?}: use sqlite, postgres or mariadb"),
    }
}

pub fn backend_name() -> &'static str {
    match backend() {
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
        Backend::Sqlite => "sqlite",
    }
}

/// A database of the test's own on the suite's server backend (none for SQLite,
/// whose file lives in the app's data folder).
pub async fn server_database() -> Option<TestDatabase> {
    match backend() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDatabase::create("api").await),
        Backend::Mariadb => Some(TestDatabase::mariadb("api").await),
    }
}

/// One running app. Its database (a SQLite file in `data_dir`, or a PostgreSQL test
/// database) goes when this value does.
pub struct TestApp {
    pub address: String,
    /// The metrics listener's base URL, when `metrics.listen` is set.
    pub metrics: Option<String>,
    /// The settings it runs with, to start more instances on the same database.
    pub settings: Settings,
    pub client: reqwest::Client,
    pub maildir: PathBuf,
    pub data_dir: tempfile::TempDir,
    pub(crate) seen: Mutex<HashMap<String, usize>>,
    // Last: dropped after the fields above.
    _database: Option<TestDatabase>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Mail::Starttls, |_| {}).await
}

/// Starts the app with test settings, `customize`d.
pub async fn spawn_app_with(mail: Mail, customize: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary folder");
    let mut settings = Settings::defaults().expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.data.dir = data_dir.path().to_owned();
    let database = server_database().await;
    settings.database.url = match &database {
        Some(database) => database.url().to_owned(),
        None => format!("sqlite://{}", data_dir.path().join("passcode.db").display()),
    };
    settings.log.level = "off".into(); // RUST_LOG overrides, to debug a test.
    settings.mail.transport = TransportKind::Smtp;
    settings.mail.from = "passcode tests <no-reply@passcode.test>".into();
    let servers = smtp();
    let smtp = &mut settings.mail.smtp;
    smtp.host = Some("localhost".into());
    smtp.username = Some(SMTP_USER.into());
    smtp.password = Some(SecretString::from(SMTP_PASSWORD.to_owned()));
    smtp.ca_file = Some(servers.ca_file.clone());
    smtp.timeout_seconds = 5.into();
    let maildir = match mail {
        Mail::Starttls | Mail::Down => {
            smtp.tls = TlsSetting::Starttls;
            smtp.port = if mail == Mail::Down {
                crate::closed_port()
            } else {
                servers.starttls_port
            };
            servers.dir.join("starttls")
        }
        Mail::Implicit => {
            smtp.tls = TlsSetting::Implicit;
            smtp.port = servers.implicit_port;
            servers.dir.join("implicit")
        }
    };
    // Mail goes out fast, and retries come quickly.
    settings.mail.outbox.poll_interval_ms = 20.into();
    settings.mail.outbox.backoff_base_ms = 100.into();
    settings.mail.outbox.backoff_max_ms = 1_000.into();
    // Limits out of the way; the abuse tests set the ones they check.
    let limits = &mut settings.limits;
    limits.guess_budget = 10_000;
    limits.guess_budget_per_client = 10_000;
    limits.login_failures = 10_000;
    limits.login_failures_per_client = 10_000;
    limits.resend_cooldown_seconds = 0.into();
    limits.resend_cap = 10_000;
    limits.client_requests = 1_000_000;
    customize(&mut settings);
    passcode_app::telemetry::init(&settings.log);

    let (address, metrics) = start_instance_with_metrics(settings.clone()).await;
    TestApp {
        address,
        metrics,
        settings,
        // Idle connections are dropped before the server's keep-alive (5 s) closes
        // them, so a request after a pause never races a closing connection.
        client: reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        maildir,
        data_dir,
        seen: Mutex::new(HashMap::new()),
        _database: database,
    }
}

/// Builds and runs one instance; returns its base URL.
pub async fn start_instance(settings: Settings) -> String {
    start_instance_with_metrics(settings).await.0
}

/// Starts an instance; returns its base URL and, with `metrics.listen` set, the base
/// URL of its metrics listener.
pub async fn start_instance_with_metrics(settings: Settings) -> (String, Option<String>) {
    let app = Application::build(settings).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    tokio::spawn(app.run_until_stopped());
    (address, metrics)
}

impl TestApp {
    /// The outbox's queued and failed messages, read from the app's database.
    pub async fn outbox(&self) -> Vec<OutboxEntry> {
        let store = Store::connect(&DatabaseSettings::new(self.settings.database.url.clone()))
            .expect("the app's database");
        store.outbox().pending(1_000).await.expect("pending")
    }

    /// A connection of the test's own to the app's database.
    pub async fn database(&self) -> crate::DatabaseConnection {
        crate::DatabaseConnection::open(&self.settings.database.url).await
    }

    /// Waits (10 s at most) until no message is left queued or failed, and fails the
    /// test with `what` and what is left if some still is. The mail worker marks a
    /// message sent only after the SMTP server has taken it, so right after the server
    /// has it, the outbox may still hold it for a moment.
    pub async fn outbox_drained(&self, what: &str) {
        crate::within_10s(Duration::from_millis(50), async || {
            let entries = self.outbox().await;
            if entries.is_empty() {
                Ok(())
            } else {
                Err(format!("{what}: still in the outbox: {entries:?}"))
            }
        })
        .await;
    }

    /// Waits (10 s at most) until a message is marked failed, and returns it.
    pub async fn failed_mail(&self) -> OutboxEntry {
        crate::within_10s(Duration::from_millis(50), async || {
            let entries = self.outbox().await;
            match entries.iter().find(|e| e.status == OutboxStatus::Failed) {
                Some(entry) => Ok(entry.clone()),
                None => Err(format!("never marked failed: {entries:?}")),
            }
        })
        .await
    }
}
