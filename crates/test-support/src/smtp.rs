//! Real SMTP servers (aiosmtpd, `tests/support/smtp_server.py`) that capture mail into
//! Maildirs.

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, OnceLock};

use passcode_app::Settings;
use passcode_app::settings::TlsSetting;
use serde_json::Value;

use crate::mail::{CapturedMail, parse_mail};
use crate::python::spawn_support;

pub const SMTP_USER: &str = "passcode-test";
pub const SMTP_PASSWORD: &str = "smtp-secret-pw";

/// The SMTP servers shared by every test of a test binary (addresses keep tests
/// apart): STARTTLS and implicit TLS, both with AUTH, under a CA of their own.
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
    let dir = tempfile::Builder::new()
        .prefix("passcode-smtp-")
        .tempdir()
        .expect("temporary folder")
        .keep();
    let (child, line) = spawn_support(
        "smtp_server.py",
        &[
            "--dir",
            &dir.to_string_lossy(),
            "--user",
            SMTP_USER,
            "--password",
            SMTP_PASSWORD,
            // A static is never dropped: the server removes the folder as it exits.
            "--remove-dir-on-exit",
        ],
        "the test SMTP servers",
    );
    let ports: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("the test SMTP servers did not name their ports: {line:?}"));
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
    dir: tempfile::TempDir,
    behaviour: String,
    child: Option<Child>,
}

impl ControlledSmtp {
    /// A server not started yet (SMTP "down"), on a free port.
    pub fn down(behaviour: &str) -> Self {
        Self {
            port: crate::closed_port(),
            dir: tempfile::Builder::new()
                .prefix("passcode-smtp1-")
                .tempdir()
                .expect("temporary folder"),
            behaviour: behaviour.to_owned(),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let (child, _) = spawn_support(
            "smtp_server.py",
            &[
                "--dir",
                &self.dir.path().to_string_lossy(),
                "--single",
                &self.port.to_string(),
                "--behaviour",
                &self.behaviour,
            ],
            "a test SMTP server",
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

    /// The Maildir it delivers into.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("single")
    }

    /// Every message received.
    pub fn received(&self) -> Vec<CapturedMail> {
        let maildir = self.maildir();
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
