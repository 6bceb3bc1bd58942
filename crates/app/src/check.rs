//! Configuration that refuses mistakes: every problem of the effective settings, each
//! naming its key, so that start-up can refuse them all in one message (instead of
//! clamping a bad value silently) and `passcode config check` can list them.

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use crate::settings::{JwtAlgorithm, Settings, TransportKind};

/// One problem: the key and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem of `settings`; empty when they can be served.
pub fn problems(settings: &Settings) -> Vec<Problem> {
    let mut found = Found::default();

    let s = settings;
    found.at_least(
        "server.body_limit_bytes",
        s.server.body_limit_bytes as u64,
        1_024,
    );
    found.at_least(
        "server.blocking_threads",
        s.server.blocking_threads as u64,
        1,
    );
    found.at_least(
        "database.max_connections",
        s.database.max_connections as u64,
        1,
    );
    found.at_least(
        "database.acquire_timeout_seconds",
        s.database.acquire_timeout_seconds.0,
        1,
    );
    found.at_least(
        "database.statement_timeout_seconds",
        s.database.statement_timeout_seconds.0,
        1,
    );
    found.at_least("otp.ttl_seconds", s.otp.ttl_seconds.0, 1);
    found.at_least("otp.max_attempts", u64::from(s.otp.max_attempts), 1);
    let l = &s.limits;
    for (key, value) in [
        ("limits.guess_budget", u64::from(l.guess_budget)),
        ("limits.guess_window_seconds", l.guess_window_seconds.0),
        (
            "limits.guess_budget_per_client",
            u64::from(l.guess_budget_per_client),
        ),
        ("limits.login_failures", u64::from(l.login_failures)),
        ("limits.login_window_seconds", l.login_window_seconds.0),
        (
            "limits.login_failures_per_client",
            u64::from(l.login_failures_per_client),
        ),
        (
            "limits.login_client_window_seconds",
            l.login_client_window_seconds.0,
        ),
        ("limits.resend_cap", u64::from(l.resend_cap)),
        ("limits.resend_window_seconds", l.resend_window_seconds.0),
        ("limits.client_requests", u64::from(l.client_requests)),
        ("limits.client_window_seconds", l.client_window_seconds.0),
        ("limits.purge_interval_seconds", l.purge_interval_seconds.0),
    ] {
        found.at_least(key, value, 1);
    }
    let j = &s.jwt;
    found.at_least("jwt.access_ttl_seconds", j.access_ttl_seconds.0, 1);
    found.at_least("jwt.refresh_ttl_seconds", j.refresh_ttl_seconds.0, 1);
    found.at_least("jwt.session_max_seconds", j.session_max_seconds.0, 1);
    found.at_least("audit.retention_days", u64::from(s.audit.retention_days), 1);
    let h = &s.hashing;
    found.at_least("hashing.iterations", u64::from(h.iterations), 1);
    found.at_least("hashing.parallelism", u64::from(h.parallelism), 1);
    found.at_least(
        "hashing.memory_kib",
        u64::from(h.memory_kib),
        8 * u64::from(h.parallelism.max(1)),
    );
    let o = &s.mail.outbox;
    found.at_least("mail.outbox.workers", u64::from(o.workers), 1);
    found.at_least("mail.outbox.batch", u64::from(o.batch), 1);
    // A claim leases its messages until they are sent: keep one claim's sends short.
    found.at_most("mail.outbox.batch", u64::from(o.batch), 1_000);
    found.at_least("mail.outbox.max_attempts", u64::from(o.max_attempts), 1);
    found.at_least("mail.outbox.poll_interval_ms", o.poll_interval_ms.0, 10);
    // Mail is due at its SMTP server within a second of its request.
    found.at_most("mail.outbox.gather_ms", o.gather_ms.0, 500);
    found.at_least("mail.outbox.lease_seconds", o.lease_seconds.0, 1);
    found.at_least("mail.outbox.backoff_base_ms", o.backoff_base_ms.0, 1);
    found.at_least(
        "mail.outbox.backoff_max_ms",
        o.backoff_max_ms.0,
        o.backoff_base_ms.0,
    );

    if !(4..=10).contains(&s.otp.length) {
        found.add(
            "otp.length",
            format!("is {}; it must be between 4 and 10", s.otp.length),
        );
    }
    if let Some(secret) = &s.otp.secret
        && secret.expose_secret().len() < 32
    {
        found.add(
            "otp.secret",
            "is shorter than 32 characters (leave it empty to generate one)".into(),
        );
    }
    if l.password_min_score > 4 {
        found.add(
            "limits.password_min_score",
            format!("is {}; zxcvbn scores go from 0 to 4", l.password_min_score),
        );
    }
    for entry in &l.trusted_proxies {
        if entry.parse::<ipnet::IpNet>().is_err() && entry.parse::<std::net::IpAddr>().is_err() {
            found.add(
                "limits.trusted_proxies",
                format!("{entry:?} is not an address or CIDR"),
            );
        }
    }
    for (key, ttl) in [
        ("jwt.access_ttl_seconds", j.access_ttl_seconds.0),
        ("jwt.refresh_ttl_seconds", j.refresh_ttl_seconds.0),
    ] {
        if ttl <= j.leeway_seconds.0 {
            found.add(
                key,
                format!(
                    "is {ttl}, not longer than jwt.leeway_seconds ({}): tokens would outlive their lifetime",
                    j.leeway_seconds.0
                ),
            );
        }
    }
    if j.algorithm == JwtAlgorithm::HS256
        && j.secret
            .as_ref()
            .is_none_or(|s| s.expose_secret().len() < 32)
    {
        found.add(
            "jwt.secret",
            "HS256 needs a secret of at least 32 bytes".into(),
        );
    }
    if let Some(file) = &j.private_key_file
        && let Err(error) = std::fs::read_to_string(file)
    {
        found.add("jwt.private_key_file", format!("cannot be read: {error}"));
    }
    if let Some(dir) = &j.keys_dir
        && dir.exists()
        && let Err(error) = std::fs::read_dir(dir)
    {
        found.add("jwt.keys_dir", format!("cannot be read: {error}"));
    }

    let url = &s.database.url;
    if url.is_empty() {
        found.add("database.url", "is empty".into());
    } else if url.contains("://")
        && ![
            "sqlite://",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
        ]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        found.add(
            "database.url",
            "must start with sqlite://, postgres://, postgresql://, mysql:// or mariadb://".into(),
        );
    }

    let m = &s.mail;
    if m.from.parse::<lettre::message::Mailbox>().is_err() {
        found.add(
            "mail.from",
            format!(
                "{:?} is not a mailbox like \"App <no-reply@example.com>\"",
                m.from
            ),
        );
    }
    if let Some(dir) = &m.templates_dir
        && !dir.is_dir()
    {
        found.add(
            "mail.templates_dir",
            format!("{} is not a folder", dir.display()),
        );
    }
    if m.transport == TransportKind::Smtp {
        if m.smtp.host.is_none() {
            found.add(
                "mail.smtp.host",
                "mail.transport = \"smtp\" needs a host".into(),
            );
        }
        if m.smtp.port == 0 {
            found.add("mail.smtp.port", "is 0".into());
        }
        found.at_least("mail.smtp.timeout_seconds", m.smtp.timeout_seconds.0, 1);
        // The most connections open at once; sends beyond it wait for one.
        found.at_least("mail.smtp.pool_size", m.smtp.pool_size.into(), 1);
        if let Some(ca_file) = &m.smtp.ca_file
            && let Err(error) = std::fs::read(ca_file)
        {
            found.add("mail.smtp.ca_file", format!("cannot be read: {error}"));
        }
    }

    if m.transport == TransportKind::Http {
        match &m.http.url {
            None => found.add(
                "mail.http.url",
                "mail.transport = \"http\" needs a URL".into(),
            ),
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                found.add("mail.http.url", format!("{url:?} is not an http(s) URL"));
            }
            Some(_) => {}
        }
        match &m.http.secret {
            None => found.add(
                "mail.http.secret",
                "mail.transport = \"http\" needs the signing secret (whsec_...)".into(),
            ),
            Some(secret) => {
                if let Err(error) = passcode_mail::signing_key(secret.expose_secret()) {
                    found.add("mail.http.secret", format!("{error:#}"));
                }
            }
        }
        found.at_least("mail.http.timeout_seconds", m.http.timeout_seconds.0, 1);
    }

    if let Some(listen) = &s.metrics.listen
        && listen.parse::<SocketAddr>().is_err()
    {
        found.add(
            "metrics.listen",
            format!("{listen:?} is not an address like 127.0.0.1:9464"),
        );
    }
    if tracing_subscriber::EnvFilter::try_new(&s.log.level).is_err() {
        found.add(
            "log.level",
            format!("{:?} is not a log filter", s.log.level),
        );
    }
    for origin in &s.server.cors.allowed_origins {
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .contains('/')
            && !origin.ends_with(':');
        if !valid {
            found.add(
                "server.cors.allowed_origins",
                format!("{origin:?} is not an origin like https://app.example.com"),
            );
        }
    }
    found.0
}

#[derive(Default)]
struct Found(Vec<Problem>);

impl Found {
    fn add(&mut self, key: &'static str, message: String) {
        self.0.push(Problem { key, message });
    }

    fn at_most(&mut self, key: &'static str, value: u64, most: u64) {
        if value > most {
            self.add(key, format!("is {value}; it must be at most {most}"));
        }
    }

    fn at_least(&mut self, key: &'static str, value: u64, least: u64) {
        if value < least {
            self.add(key, format!("is {value}; it must be at least {least}"));
        }
    }
}

/// `Ok` if there is nothing to refuse; otherwise one error naming every bad key.
pub fn ensure_valid(settings: &Settings) -> anyhow::Result<()> {
    let found = problems(settings);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|p| format!("  - {p}")).collect();
    anyhow::bail!("invalid configuration:\n{}", list.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_have_no_problem() {
        assert_eq!(problems(&Settings::defaults().unwrap()), vec![]);
    }

    #[test]
    fn the_mail_hook_needs_an_http_url_and_a_standard_webhooks_secret() {
        let mut s = Settings::defaults().unwrap();
        s.mail.transport = TransportKind::Http;
        let keys: Vec<&str> = problems(&s).iter().map(|p| p.key).collect();
        assert_eq!(keys, ["mail.http.url", "mail.http.secret"]);
        s.mail.http.url = Some("ftp://example.com".into());
        s.mail.http.secret = Some("whsec_short".to_owned().into());
        let found = problems(&s);
        assert_eq!(found.len(), 2, "{found:?}");
        s.mail.http.url = Some("https://mail.example.com/hook".into());
        s.mail.http.secret = Some(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwq1VXqT3yR2s="
                .to_owned()
                .into(),
        );
        assert_eq!(problems(&s), vec![]);
    }

    #[test]
    fn an_smtp_pool_needs_a_connection_and_may_be_smaller_than_the_sends_at_once() {
        let mut s = Settings::defaults().unwrap();
        s.mail.transport = TransportKind::Smtp;
        s.mail.smtp.host = Some("smtp.example.com".into());
        s.mail.smtp.pool_size = 0;
        let keys: Vec<&str> = problems(&s).iter().map(|p| p.key).collect();
        assert_eq!(keys, ["mail.smtp.pool_size"]);
        // A provider's limit on connections: the other sends wait for one.
        s.mail.smtp.pool_size = 2;
        s.mail.outbox.workers = 8;
        assert_eq!(problems(&s), vec![]);
    }

    #[test]
    fn every_bad_value_is_named_at_once() {
        let mut s = Settings::defaults().unwrap();
        s.mail.outbox.workers = 0;
        s.otp.ttl_seconds = 0.into();
        s.jwt.access_ttl_seconds = 3.into();
        s.jwt.leeway_seconds = 5.into();
        s.jwt.private_key_file = Some("/nonexistent/key.pem".into());
        s.limits.password_min_score = 7;
        s.metrics.listen = Some("nowhere".into());
        s.mail.outbox.gather_ms = 501.into();
        s.mail.outbox.batch = 0;
        s.server.blocking_threads = 0;
        let keys: Vec<&str> = problems(&s).iter().map(|p| p.key).collect();
        for key in [
            "server.blocking_threads",
            "mail.outbox.workers",
            "otp.ttl_seconds",
            "jwt.access_ttl_seconds",
            "jwt.private_key_file",
            "limits.password_min_score",
            "metrics.listen",
            "mail.outbox.gather_ms",
            "mail.outbox.batch",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        let message = ensure_valid(&s).unwrap_err().to_string();
        assert!(
            message.contains("otp.ttl_seconds: is 0; it must be at least 1"),
            "{message}"
        );
        assert!(
            message.contains("mail.outbox.gather_ms: is 501; it must be at most 500"),
            "{message}"
        );
    }
}
