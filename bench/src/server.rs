//! The passcode binary under test: started on a free port with its mail sent over SMTP
//! to a real server of the benchmark's own (or written to files), so that set-up can
//! read codes and the benchmark can time mail.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::{self, Call};
use crate::scripts::Answered;

/// Which limits the server runs with.
#[derive(Debug, Clone, Copy)]
pub enum Limits {
    /// Every budget out of reach: each request does its whole work.
    Raised,
    /// The shipped guessing budgets (the per-client request limit raised, so that the
    /// budget, kept in the database, is what answers), and the benchmark trusted as a
    /// proxy (`X-Forwarded-For`), so that a scenario can be many clients.
    Budgets,
}

/// Where the server under test sends its mail.
#[derive(Debug, Clone)]
pub enum MailSink {
    /// A real SMTP server (aiosmtpd, `tests/support/smtp_server.py`, run by `python`)
    /// over implicit TLS with AUTH, as the tutorial's Zoho on port 465. A mail's time
    /// is when that server wrote it into its Maildir.
    Smtp { python: PathBuf, script: PathBuf },
    /// The file transport: a mail's time is when passcode wrote its file.
    File,
}

const SMTP_USER: &str = "passcode-bench";
const SMTP_PASSWORD: &str = "bench-smtp-password";

pub struct Passcode {
    pub addr: SocketAddr,
    child: Child,
    /// The binary and the settings it was started with, for its commands (`users ...`).
    binary: PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    mail_dir: PathBuf,
    /// The SMTP server, if mail goes over SMTP: it stops when dropped.
    smtp: Option<Child>,
}

const HIGH: &str = "1000000000";

impl Passcode {
    pub async fn start(
        binary: &Path,
        dir: &Path,
        database_url: Option<&str>,
        limits: Limits,
        mail: &MailSink,
    ) -> anyhow::Result<Self> {
        if !binary.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release -p passcode-app`",
                binary.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("passcode.log"))?;
        // A launcher for experiments, e.g. BENCH_LAUNCHER="chrt -f 1" (the binary and its
        // arguments follow it; it must exec them, so that the PID measured is the server's).
        let launcher = std::env::var("BENCH_LAUNCHER").unwrap_or_default();
        let mut launcher = launcher.split_whitespace();
        let mut command = match launcher.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(launcher).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        // Extra settings for experiments, e.g. BENCH_ENV="APP__DATABASE__MAX_CONNECTIONS=1".
        for pair in std::env::var("BENCH_ENV")
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Some((key, value)) = pair.split_once('=') {
                command.env(key, value);
            }
        }
        command
            .arg("serve")
            .env("APP__SERVER__PORT", port.to_string())
            .env("APP__DATA__DIR", dir.join("data"))
            .env(
                "APP__DATABASE__URL",
                database_url.map_or_else(
                    || format!("sqlite://{}", dir.join("passcode.db").display()),
                    str::to_owned,
                ),
            )
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Limits::Budgets = limits {
            command.env("APP__LIMITS__CLIENT_REQUESTS", HIGH);
            // The benchmark as a trusted proxy: a scenario names its clients.
            command.env("APP__LIMITS__TRUSTED_PROXIES", "127.0.0.1");
        }
        if let Limits::Raised = limits {
            for key in [
                "GUESS_BUDGET",
                "GUESS_BUDGET_PER_CLIENT",
                "LOGIN_FAILURES",
                "LOGIN_FAILURES_PER_CLIENT",
                "RESEND_CAP",
                "CLIENT_REQUESTS",
            ] {
                command.env(format!("APP__LIMITS__{key}"), HIGH);
            }
        }
        let (mail_dir, smtp) = match mail {
            MailSink::File => {
                let mail_dir = dir.join("mail");
                command
                    .env("APP__MAIL__TRANSPORT", "file")
                    .env("APP__MAIL__FILE_DIR", &mail_dir);
                (mail_dir, None)
            }
            MailSink::Smtp { python, script } => {
                let smtp_dir = tempfile::Builder::new().prefix("smtp").tempdir_in(dir)?;
                let smtp_dir = smtp_dir.keep();
                let (child, port, ca) = start_smtp(python, script, &smtp_dir).await?;
                command
                    .env("APP__MAIL__TRANSPORT", "smtp")
                    .env("APP__MAIL__SMTP__HOST", "localhost")
                    .env("APP__MAIL__SMTP__PORT", port.to_string())
                    .env("APP__MAIL__SMTP__TLS", "implicit")
                    .env("APP__MAIL__SMTP__USERNAME", SMTP_USER)
                    .env("APP__MAIL__SMTP__PASSWORD", SMTP_PASSWORD)
                    .env("APP__MAIL__SMTP__CA_FILE", ca);
                (smtp_dir.join("implicit").join("new"), Some(child))
            }
        };
        let env = command
            .as_std()
            .get_envs()
            .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
            .collect();
        let child = command.spawn().context("starting passcode")?;
        let server = Self {
            addr,
            child,
            binary: binary.to_owned(),
            env,
            mail_dir,
            smtp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = load::once(addr, Call::get("/health/ready")).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "passcode did not become ready within 60 s; see {}",
                    dir.join("passcode.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn register(&self, email: &str) -> anyhow::Result<()> {
        ok(self.addr, registration(email)).await.map(drop)
    }

    /// Registers every address of `emails`, eight at a time.
    pub async fn register_all(&self, emails: &[String]) -> anyhow::Result<()> {
        self.send_all(emails.iter().map(|email| registration(email)))
            .await
            .map(drop)
    }

    /// Deactivates the account of each of `emails` with the binary's own command
    /// (`passcode users deactivate`, on the server's database), eight at a time.
    pub async fn deactivate_all(&self, emails: &[String]) -> anyhow::Result<()> {
        for chunk in emails.chunks(8) {
            let mut running = tokio::task::JoinSet::new();
            for email in chunk {
                let mut command = Command::new(&self.binary);
                command
                    .envs(self.env.iter().cloned())
                    .args(["users", "deactivate", email])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let email = email.clone();
                running.spawn(async move { (command.output().await, email) });
            }
            while let Some(done) = running.join_next().await {
                let (output, email) = done?;
                let output = output.context("running passcode users deactivate")?;
                if !output.status.success() {
                    bail!(
                        "passcode users deactivate {email}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
            }
        }
        Ok(())
    }

    /// Verifies each address of `codes` with its code, eight at a time.
    pub async fn verify_all(&self, codes: &[(String, String)]) -> anyhow::Result<()> {
        self.verify_all_for_tokens(codes).await.map(drop)
    }

    /// As `verify_all`, answering the refresh token each verification returned, in no
    /// particular order.
    pub async fn verify_all_for_tokens(
        &self,
        codes: &[(String, String)],
    ) -> anyhow::Result<Vec<String>> {
        let calls = codes.iter().map(|(email, code)| {
            Call::post(
                "/api/accounts/validate-otp/",
                json!({"email": email, "otp": code}),
            )
        });
        self.send_all(calls)
            .await?
            .iter()
            .map(|body| {
                body["token"]["refresh"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("validate-otp answered no refresh token: {body}"))
            })
            .collect()
    }

    /// POSTs `{"email": ...}` to `path` for each of `emails`, eight at a time.
    pub async fn ask_all(&self, path: &'static str, emails: &[String]) -> anyhow::Result<()> {
        self.send_all(
            emails
                .iter()
                .map(|email| Call::post(path, json!({"email": email}))),
        )
        .await
        .map(drop)
    }

    /// Sends `calls`, eight at a time; each must be answered 2xx. Answers the bodies,
    /// in the order they came.
    async fn send_all(
        &self,
        calls: impl Iterator<Item = Call>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut running = tokio::task::JoinSet::new();
        let mut bodies = Vec::new();
        for call in calls {
            if running.len() >= 8
                && let Some(done) = running.join_next().await
            {
                bodies.push(done??);
            }
            let addr = self.addr;
            running.spawn(async move { ok(addr, call).await });
        }
        while let Some(done) = running.join_next().await {
            bodies.push(done??);
        }
        Ok(bodies)
    }

    /// Every mail file: its recipient, its code (if any) and when it was written.
    fn mails(&self) -> Vec<(String, Option<String>, SystemTime)> {
        self.mails_about("")
    }

    /// `mails()`, of the mails whose subject contains `about`.
    fn mails_about(&self, about: &str) -> Vec<(String, Option<String>, SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.mail_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let written = entry.metadata().ok()?.modified().ok()?;
                let raw = std::fs::read(entry.path()).ok()?;
                let parsed = mailparse::parse_mail(&raw).ok()?;
                let header = |name: &str| {
                    parsed
                        .headers
                        .iter()
                        .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
                        .map(mailparse::MailHeader::get_value)
                };
                if !header("subject")?.contains(about) {
                    return None;
                }
                let to = header("to")?;
                let to = to
                    .rsplit('<')
                    .next()
                    .unwrap_or(&to)
                    .trim_end_matches('>')
                    .trim()
                    .to_owned();
                let text = if parsed.subparts.is_empty() {
                    parsed.get_body().ok()?
                } else {
                    parsed.subparts.first()?.get_body().ok()?
                };
                Some((to, six_digits(&text), written))
            })
            .collect()
    }

    /// The code mailed to `email`, waiting for the outbox to send it.
    pub async fn code_for(&self, email: &str) -> anyhow::Result<String> {
        let mut codes = self.codes_for(&[email.to_owned()], "").await?;
        Ok(codes.remove(0).1)
    }

    /// The code mailed to each of `emails` in a mail whose subject contains `about`
    /// (one each), in their order, waiting up to 60 s for the outbox to send them.
    pub async fn codes_for(
        &self,
        emails: &[String],
        about: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mailed: std::collections::HashMap<String, String> = self
                .mails_about(about)
                .into_iter()
                .filter_map(|(to, code, _)| Some((to, code?)))
                .collect();
            let found: Vec<(String, String)> = emails
                .iter()
                .filter_map(|email| Some((email.clone(), mailed.get(email)?.clone())))
                .collect();
            if found.len() == emails.len() {
                return Ok(found);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} codes were mailed within 60 s",
                    found.len(),
                    emails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How long after its answer each registration's mail reached the SMTP server, as
    /// a line; and the SMTP server's CPU per mail in µs, where it is known.
    pub async fn mail_delay(&self, answered: &Answered) -> anyhow::Result<(String, Option<f64>)> {
        let wanted = answered.lock().map(|a| a.clone()).unwrap_or_default();
        let started = Instant::now();
        let mut delays;
        loop {
            delays = self
                .mails()
                .into_iter()
                .filter_map(|(to, _, written)| {
                    let at = wanted.get(&to)?;
                    Some(written.duration_since(*at).unwrap_or_default())
                })
                .collect::<Vec<_>>();
            if delays.len() >= wanted.len() || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        delays.sort_unstable();
        let pick = |q: f64| {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let i = ((delays.len() as f64 * q).ceil() as usize).clamp(1, delays.len().max(1)) - 1;
            delays.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        // The SMTP server shares the machine with passcode: what it costs a mail.
        let mails = std::fs::read_dir(&self.mail_dir)
            .map_or(0, Iterator::count)
            .max(1);
        #[allow(clippy::cast_precision_loss)]
        let per_mail = self
            .smtp
            .as_ref()
            .and_then(Child::id)
            .and_then(load::cpu_time)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / mails as f64);
        let smtp_cpu = per_mail.map_or(String::new(), |per_mail| {
            format!("; the SMTP server's CPU {per_mail:.0} µs per mail ({mails} mails)")
        });
        Ok((
            format!(
                "register mail: {} of {} written; delay after the answer p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{smtp_cpu}",
                delays.len(),
                wanted.len(),
                pick(0.5),
                pick(0.99),
                pick(1.0)
            ),
            per_mail,
        ))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's peak resident memory so far.
    pub fn peak_memory(&self) -> String {
        let peak = self.child.id().and_then(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        });
        format!("peak RSS: {}", peak.unwrap_or_else(|| "unknown".into()))
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM: a graceful stop, as in production.
            let _ = Command::new("kill").arg(pid.to_string()).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Starts the SMTP servers of `tests/support/smtp_server.py` delivering under `dir`:
/// the implicit-TLS one's port and the certificate authority to trust.
async fn start_smtp(
    python: &Path,
    script: &Path,
    dir: &Path,
) -> anyhow::Result<(Child, u16, PathBuf)> {
    let log = std::fs::File::create(dir.join("smtp.log"))?;
    let mut child = Command::new(python)
        .arg(script)
        .arg("--dir")
        .arg(dir)
        .args(["--user", SMTP_USER, "--password", SMTP_PASSWORD])
        // It serves until its standard input closes, so it ends with this process.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting the SMTP server with {} (bench/run.sh installs aiosmtpd and trustme and sets BENCH_PYTHON)",
                python.display()
            )
        })?;
    let stdout = child.stdout.take().context("the SMTP server's output")?;
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .context("the SMTP server did not start within 30 s")??
    .with_context(|| {
        format!(
            "the SMTP server ended before it started; see {}",
            dir.join("smtp.log").display()
        )
    })?;
    let ports: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("the SMTP server did not name its ports: {line:?}"))?;
    let port = ports["implicit_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("no implicit_port in {line:?}"))?;
    let ca = ports["ca"]
        .as_str()
        .with_context(|| format!("no ca in {line:?}"))?;
    Ok((child, port, PathBuf::from(ca)))
}

fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

/// A registration of `email` with the benchmark's password.
pub fn registration(email: &str) -> Call {
    Call::post(
        "/api/accounts/create/",
        json!({"email": email, "full_name": "Bench User", "password": crate::PASSWORD}),
    )
}

/// Sends `call` to the server at `addr`, answering the body; an answer other than 2xx
/// is an error.
async fn ok(addr: std::net::SocketAddr, call: Call) -> anyhow::Result<serde_json::Value> {
    let (status, body) = load::once(addr, call.clone()).await?;
    if !(200..300).contains(&status) {
        bail!("{} {} answered {status} {body}", call.method, call.path);
    }
    Ok(body)
}
