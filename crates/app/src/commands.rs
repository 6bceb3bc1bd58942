//! The operator commands besides `serve`: `migrate`, `mail test`, `mail queue`,
//! `users`, `keys` and `audit` (`config check` is in `check.rs`).

use std::fmt::Write;
use std::sync::Arc;

use chrono::Utc;
use passcode_domain::ports::Clock;
use passcode_mail::LettreMailer;

use crate::clock::SystemClock;

use crate::Settings;
use crate::adapters::{mail_settings, open_store};
use crate::startup::assemble;

/// `passcode migrate`: applies pending migrations and reports them.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Vec<String>> {
    open_store(settings)?.migrate().await
}

/// `passcode mail test ADDRESS`: one message through the configured transport.
pub async fn mail_test(settings: &Settings, to: &str) -> anyhow::Result<String> {
    LettreMailer::new(&mail_settings(settings)?, Arc::new(SystemClock))?
        .send_test(to)
        .await
}

/// `passcode mail queue`: what waits or failed (never a body or a code); with
/// `retry_failed`, failed messages that can still be sent are queued again.
pub async fn mail_queue(settings: &Settings, retry_failed: bool) -> anyhow::Result<String> {
    let outbox = open_store(settings)?.outbox();
    let mut out = String::new();
    if retry_failed {
        let requeued = outbox.retry_failed(SystemClock.now()).await?;
        writeln!(out, "queued {requeued} failed message(s) again")?;
    }
    let entries = outbox.pending(500).await?;
    if entries.is_empty() {
        writeln!(out, "no queued or failed messages")?;
    }
    for e in entries {
        writeln!(
            out,
            "{}  {:<8} {:<22} attempts={} created={} next={} to={}{}",
            e.id,
            e.status.as_str(),
            e.kind,
            e.attempts,
            e.created_at.format("%Y-%m-%d %H:%M:%S"),
            e.next_attempt_at.format("%H:%M:%S"),
            e.recipient,
            e.last_error
                .map(|err| format!("\n    last error: {err}"))
                .unwrap_or_default(),
        )?;
    }
    Ok(out)
}

/// `passcode users deactivate|activate EMAIL`: a deactivated account can neither log
/// in nor refresh, and its sessions are revoked at once.
pub async fn set_user_active(
    settings: &Settings,
    email: &str,
    active: bool,
) -> anyhow::Result<String> {
    let email = passcode_domain::EmailAddress::parse(email)
        .map_err(|e| anyhow::anyhow!("{email:?}: {e}"))?;
    let store = open_store(settings)?;
    let (service, _, _) = assemble(
        settings,
        &crate::startup::Storage::of(&store),
        crate::startup::Replaced::default(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )?;
    if service.set_account_active(&email, active).await? {
        let done = if active {
            "activated"
        } else {
            "deactivated; its sessions are revoked"
        };
        Ok(format!("{email}: {done}"))
    } else {
        anyhow::bail!("no account with the address {email}")
    }
}

/// `passcode users delete`: erases the account of `email` as its owner's own delete does.
pub async fn delete_user(settings: &Settings, email: &str) -> anyhow::Result<String> {
    let email = passcode_domain::EmailAddress::parse(email)
        .map_err(|e| anyhow::anyhow!("{email:?}: {e}"))?;
    let store = open_store(settings)?;
    let (service, _, _) = assemble(
        settings,
        &crate::startup::Storage::of(&store),
        crate::startup::Replaced::default(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )?;
    if service.delete_account_of(&email).await? {
        Ok(format!(
            "{email}: deleted; a confirmation is queued for the address"
        ))
    } else {
        anyhow::bail!("no account with the address {email}")
    }
}

/// `passcode keys ...`: the token signing keys. Instances load keys at start, so
/// after a change restart them (see docs/tokens.md for a rotation without sign-outs).
pub fn keys(settings: &Settings, action: KeysAction) -> anyhow::Result<String> {
    let dir = crate::adapters::keys_dir(settings);
    let algorithm =
        |name: Option<String>| -> anyhow::Result<passcode_jwt::jsonwebtoken_algorithm::Algorithm> {
            match name {
                None => Ok(crate::adapters::jwt_algorithm(settings.jwt.algorithm)),
                Some(name) => name.parse().map_err(|_| {
                    anyhow::anyhow!("unknown algorithm {name:?}: use EdDSA, ES256 or RS256")
                }),
            }
        };
    match action {
        KeysAction::List => {
            let set = crate::adapters::load_keys(settings)?;
            let mut out = String::new();
            for key in set.keys() {
                let active = if key.kid() == set.signer().kid() {
                    "  (signs)"
                } else {
                    ""
                };
                writeln!(out, "{}  {:?}{active}", key.kid(), key.algorithm())?;
            }
            Ok(out)
        }
        KeysAction::Generate { algorithm: name } => {
            let key = passcode_jwt::Key::generate(algorithm(name)?)?;
            let path = passcode_jwt::store_key(&dir, &key)?;
            Ok(format!(
                "{}  {:?}: stored in {}; it verifies after a restart, and signs once activated",
                key.kid(),
                key.algorithm(),
                path.display()
            ))
        }
        KeysAction::Activate { kid } => {
            let set = crate::adapters::load_keys(settings)?;
            anyhow::ensure!(
                set.keys().any(|k| k.kid() == kid),
                "no key {kid} in {}",
                dir.display()
            );
            passcode_jwt::activate(&dir, &kid)?;
            Ok(format!(
                "{kid} signs from the next restart; every other key still verifies"
            ))
        }
        KeysAction::Rotate { algorithm: name } => {
            let key = passcode_jwt::Key::generate(algorithm(name)?)?;
            passcode_jwt::store_key(&dir, &key)?;
            passcode_jwt::activate(&dir, key.kid())?;
            Ok(format!(
                "{}  {:?} signs from the next restart; every other key still verifies",
                key.kid(),
                key.algorithm()
            ))
        }
    }
}

/// What `passcode keys` does.
#[derive(Debug, Clone)]
pub enum KeysAction {
    List,
    Generate { algorithm: Option<String> },
    Activate { kid: String },
    Rotate { algorithm: Option<String> },
}

/// `passcode audit`: the audit trail, newest first, optionally for one address and
/// from a time on; one line per event, or JSON lines.
pub async fn audit(
    settings: &Settings,
    email: Option<&str>,
    since: Option<&str>,
    json: bool,
    limit: u32,
) -> anyhow::Result<String> {
    let email = email
        .map(|e| {
            passcode_domain::EmailAddress::parse(e).map_err(|why| anyhow::anyhow!("{e:?}: {why}"))
        })
        .transpose()?;
    let since = since.map(parse_since).transpose()?;
    let store = open_store(settings)?;
    let events = store
        .audit()
        .list(&passcode_domain::AuditQuery {
            email,
            since,
            limit,
        })
        .await?;
    let mut out = String::new();
    for event in &events {
        if json {
            let line = serde_json::json!({
                "at": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "event": event.kind.as_str(),
                "user_id": event.user_id.map(|id| id.to_string()),
                "email": event.email.as_ref().map(|e| e.as_str()),
                "client": event.client,
                "request_id": event.request_id,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}  {:<22}  {:<30}  client={}  request={}",
                event.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                event.kind.as_str(),
                event.email.as_ref().map_or("-", |e| e.as_str()),
                event.client.as_deref().unwrap_or("-"),
                event.request_id.as_deref().unwrap_or("-"),
            )?;
        }
    }
    if events.is_empty() && !json {
        writeln!(out, "no audit events")?;
    }
    Ok(out)
}

/// `--since`: an RFC 3339 time, a date (`2026-12-01`, midnight UTC), or an age like
/// `90m`, `24h` or `7d`.
fn parse_since(raw: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let amount: i64 = number.parse().map_err(|_| {
        anyhow::anyhow!("--since {raw:?}: use 2026-12-01T10:00:00Z, 2026-12-01, or 90m, 24h, 7d")
    })?;
    let age = match unit {
        "m" => chrono::Duration::minutes(amount),
        "h" => chrono::Duration::hours(amount),
        "d" => chrono::Duration::days(amount),
        _ => {
            anyhow::bail!("--since {raw:?}: use 2026-12-01T10:00:00Z, 2026-12-01, or 90m, 24h, 7d")
        }
    };
    Ok(SystemClock.now() - age)
}

/// Records that the signing keys were rotated (or another key activated).
pub async fn record_keys_rotated(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings)?;
    let event = passcode_domain::AuditEvent::new(
        passcode_domain::AuditKind::KeysRotated,
        SystemClock.now(),
        None,
        None,
        &passcode_domain::RequestContext::default(),
    );
    store.audit().record(&event).await?;
    Ok(())
}
