//! The harness: starts the real app on port 0 with a fresh SQLite file, and real SMTP
//! servers (aiosmtpd, `tests/support/smtp_server.py`) that capture mail into Maildirs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use passcode_app::settings::{TlsSetting, TransportKind};
use passcode_app::{Application, Settings};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const SMTP_USER: &str = "passcode-test";
pub const SMTP_PASSWORD: &str = "smtp-secret-pw";
pub const PASSWORD: &str = "correct horse battery staple";

/// The SMTP servers shared by every test of this binary (addresses keep tests apart).
pub struct SmtpServers {
    pub starttls_port: u16,
    pub implicit_port: u16,
    pub ca_file: PathBuf,
    pub dir: PathBuf,
    _child: Mutex<Child>,
}

pub fn smtp() -> &'static SmtpServers {
    static SERVERS: OnceLock<SmtpServers> = OnceLock::new();
    SERVERS.get_or_init(start_smtp)
}

fn start_smtp() -> SmtpServers {
    let python = std::env::var("PASSCODE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::Builder::new()
        .prefix("passcode-smtp-")
        .tempdir()
        .expect("temporary folder")
        .keep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/smtp_server.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--dir", &dir.to_string_lossy(), "--user", SMTP_USER, "--password", SMTP_PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the test SMTP server with {python:?}: {e}. Run the tests with scripts/test.sh, which installs aiosmtpd and trustme in a venv and sets PASSCODE_TEST_PYTHON."));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reading the SMTP server's ports");
    let ports: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!("the test SMTP server did not start (is aiosmtpd installed for {python:?}?). Run the tests with scripts/test.sh.")
    });
    SmtpServers {
        starttls_port: ports["starttls_port"].as_u64().expect("port") as u16,
        implicit_port: ports["implicit_port"].as_u64().expect("port") as u16,
        ca_file: PathBuf::from(ports["ca"].as_str().expect("ca")),
        dir,
        // Its stdin is held open here; it exits when this process does.
        _child: Mutex::new(child),
    }
}

/// A plain SMTP server of one test's own, on a fixed port, that the test can stop and
/// start again, answering as chosen (`accept`, `tempfail:N`, `reject`).
pub struct ControlledSmtp {
    pub port: u16,
    pub dir: PathBuf,
    behaviour: String,
    child: Option<Child>,
}

impl ControlledSmtp {
    /// A server not started yet (SMTP "down"), on a free port.
    pub fn down(behaviour: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("passcode-smtp1-")
            .tempdir()
            .expect("temporary folder")
            .keep();
        Self {
            port: closed_port(),
            dir,
            behaviour: behaviour.to_owned(),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let python = std::env::var("PASSCODE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/smtp_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args([
                "--dir",
                &self.dir.to_string_lossy(),
                "--single",
                &self.port.to_string(),
            ])
            .args(["--behaviour", &self.behaviour])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the test SMTP server (run scripts/test.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the SMTP server's first line");
        assert!(
            line.contains("port"),
            "the test SMTP server did not start: {line:?}"
        );
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Points `settings` at this server (plain SMTP, no AUTH).
    pub fn configure(&self, settings: &mut Settings) {
        settings.mail.smtp.host = Some("127.0.0.1".into());
        settings.mail.smtp.port = self.port;
        settings.mail.smtp.tls = TlsSetting::None;
        settings.mail.smtp.username = None;
        settings.mail.smtp.password = None;
        settings.mail.smtp.timeout_seconds = 2.into();
    }

    /// Every message received, as (recipient, message).
    pub fn received(&self) -> Vec<CapturedMail> {
        let maildir = self.dir.join("single");
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| parse_mail(&std::fs::read(entry.ok()?.path()).ok()?))
            .collect()
    }
}

impl Drop for ControlledSmtp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the app reaches the mail server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mail {
    Starttls,
    Implicit,
    /// SMTP configured to a port where nothing listens.
    Down,
}

pub struct TestApp {
    pub address: String,
    /// The metrics listener's base URL, when `metrics.listen` is set.
    pub metrics: Option<String>,
    /// The settings it runs with, to start more instances on the same database.
    pub settings: Settings,
    pub client: reqwest::Client,
    pub maildir: PathBuf,
    pub data_dir: tempfile::TempDir,
    seen: Mutex<HashMap<String, usize>>,
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
    settings.database.url = match backend() {
        Backend::Sqlite => format!("sqlite://{}", data_dir.path().join("passcode.db").display()),
        Backend::Postgres => fresh_postgres_database().await,
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
                closed_port()
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database the suite runs on: `PASSCODE_TEST_BACKEND=postgres` or SQLite.
pub fn backend() -> Backend {
    match std::env::var("PASSCODE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("PASSCODE_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

pub fn backend_name() -> &'static str {
    match backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

/// A new, empty database on the server of `TEST_DATABASE_URL`.
pub async fn fresh_postgres_database() -> String {
    let admin = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run scripts/test.sh (it starts a throwaway PostgreSQL cluster), \
         or set it to postgres://USER@HOST:PORT/DB of a server where tests may create databases",
    );
    let name = format!("api_{}", uuid_like().replace('-', "_"));
    passcode_persistence::postgres::create_database(&admin, &name)
        .await
        .expect("creating a test database")
}

/// A PostgreSQL cluster of one test's own, which the test may stop and start.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster.sh");

    pub fn start() -> Self {
        let cluster = Self {
            dir: tempfile::Builder::new()
                .prefix("passcode-pg-")
                .tempdir()
                .expect("temporary folder"),
            port: closed_port(),
        };
        cluster.resume();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(Self::SCRIPT)
            .args(args)
            .status()
            .expect("running scripts/pg-cluster.sh");
        assert!(status.success(), "scripts/pg-cluster.sh {args:?} failed");
    }

    /// Starts (or restarts) the server on the same port.
    pub fn resume(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["start", &dir, &self.port.to_string()]);
    }

    pub fn stop(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.run(&["stop", &dir]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A fresh address for one test.
/// The Python of the tests' venv (`PASSCODE_TEST_PYTHON`, set by scripts/test.sh).
pub fn test_python() -> PathBuf {
    PathBuf::from(std::env::var("PASSCODE_TEST_PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// A command installed in the tests' venv beside its Python (`st`, `openapi-python-client`).
pub fn venv_tool(name: &str) -> PathBuf {
    let tool = test_python().with_file_name(name);
    assert!(
        tool.exists(),
        "{} is missing: run the tests with scripts/test.sh, which installs the tests' Python tools",
        tool.display()
    );
    tool
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid_like())
}

fn uuid_like() -> String {
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

/// A captured message: headers of interest and the decoded text and HTML parts.
#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub to: String,
    pub subject: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
}

impl CapturedMail {
    /// The first standalone run of six digits in the text part.
    pub fn code(&self) -> Option<String> {
        self.text
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .map(str::to_owned)
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str) -> reqwest::Response {
        self.post(
            "/api/accounts/create/",
            &json!({"full_name": "Ada Lovelace", "email": email, "password": PASSWORD}),
        )
        .await
    }

    pub async fn validate(&self, email: &str, otp: &str) -> reqwest::Response {
        self.post(
            "/api/accounts/validate-otp/",
            &json!({"email": email, "otp": otp}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post(
            "/api/accounts/token/",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// POSTs `body` as if from `client` behind a trusted proxy at 127.0.0.1 (the app
    /// must list it in `limits.trusted_proxies`).
    pub async fn post_from(&self, client: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("x-forwarded-for", client)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Runs `passcode users ACTION EMAIL` against this app's database.
    pub fn users_cli(&self, action: &str, email: &str) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_passcode"))
            .args(["users", action, email])
            .env("APP__LOG__LEVEL", "off")
            .env("APP__DATABASE__URL", &self.settings.database.url)
            .env("APP__DATA__DIR", self.data_dir.path())
            .output()
            .expect("passcode users");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Registers, reads the code from the mail, verifies: returns the token body.
    pub async fn verified_user(&self, email: &str) -> Value {
        assert_eq!(self.register(email).await.status(), 201);
        let code = self.next_code(email).await;
        let response = self.validate(email, &code).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")["token"].clone()
    }

    /// Every message captured for `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<CapturedMail> {
        mails_in(&self.maildir, to)
    }

    /// Waits (up to 10 s) for a message to `to` beyond those already taken.
    pub async fn next_mail(&self, to: &str) -> CapturedMail {
        let to = to.trim().to_ascii_lowercase();
        let seen = *self.seen.lock().expect("lock").get(&to).unwrap_or(&0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails_to(&to);
            if mails.len() > seen {
                self.seen.lock().expect("lock").insert(to, seen + 1);
                return mails[seen].clone();
            }
            assert!(Instant::now() < deadline, "no new mail to {to} within 10 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn next_code(&self, to: &str) -> String {
        let mail = self.next_mail(to).await;
        mail.code()
            .unwrap_or_else(|| panic!("no code in mail: {}", mail.text))
    }
}

/// Every message for `to` in `maildir`, oldest first.
pub fn mails_in(maildir: &std::path::Path, to: &str) -> Vec<CapturedMail> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.metadata().ok()?.modified().ok()?, entry.path()))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, path)| parse_mail(&std::fs::read(path).ok()?))
        .filter(|mail| mail.to.eq_ignore_ascii_case(to))
        .collect()
}

fn parse_mail(raw: &[u8]) -> Option<CapturedMail> {
    let parsed = mailparse::parse_mail(raw).ok()?;
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let part = |mime: &str| {
        parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .and_then(|p| p.get_body().ok())
            .unwrap_or_default()
    };
    Some(CapturedMail {
        to: header("To"),
        subject: header("Subject"),
        content_type: parsed.ctype.mimetype.clone(),
        text: part("text/plain"),
        html: part("text/html"),
    })
}

/// The JSON body of a response, asserting its status first.
pub async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status, body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

/// Waits (20 s at most) until a service started as a process answers on `base`.
pub async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
