//! Outbox rows: the stored form of a queued message, and the claim statements.

use chrono::Duration;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use passcode_domain::ports::{Mail, OutboxEntry, OutboxStatus, QueuedMail};
use passcode_domain::{EmailAddress, InfraError, OtpCode, OtpPurpose};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cipher::MailKey;
use crate::schema::outbox;
use crate::time::{from_millis, to_millis};

/// What is needed to render the message again; it holds the code, so it is erased
/// as soon as the message is no longer waiting.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Payload {
    Code {
        full_name: String,
        code: String,
        purpose: String,
        valid_for_seconds: i64,
    },
    RegistrationAttempt {
        full_name: String,
    },
    PasswordChanged {
        full_name: String,
    },
    AccountDeleted {
        full_name: String,
    },
    EmailChangeRequested {
        full_name: String,
    },
    EmailChanged {
        full_name: String,
    },
}

fn kind(mail: &Mail) -> &'static str {
    match mail {
        Mail::Code { .. } => "code",
        Mail::RegistrationAttempt { .. } => "registration_attempt",
        Mail::PasswordChanged { .. } => "password_changed",
        Mail::AccountDeleted { .. } => "account_deleted",
        Mail::EmailChangeRequested { .. } => "email_change_requested",
        Mail::EmailChanged { .. } => "email_changed",
    }
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
pub(crate) struct NewOutboxRow {
    id: String,
    recipient: String,
    kind: String,
    payload: Option<String>,
    status: String,
    attempts: i32,
    next_attempt_at: i64,
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    otp_id: Option<String>,
}

impl NewOutboxRow {
    /// A queued message, its body sealed under `key`; `otp_id` is the code it carries.
    pub(crate) fn new(
        mail: &Mail,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        key: &MailKey,
        otp_id: Option<Uuid>,
    ) -> Result<Self, InfraError> {
        let payload = match mail {
            Mail::Code {
                full_name,
                code,
                purpose,
                valid_for,
                ..
            } => Payload::Code {
                full_name: full_name.clone(),
                code: code.expose().to_owned(),
                purpose: purpose.as_str().to_owned(),
                valid_for_seconds: valid_for.num_seconds(),
            },
            Mail::RegistrationAttempt { full_name, .. } => Payload::RegistrationAttempt {
                full_name: full_name.clone(),
            },
            Mail::PasswordChanged { full_name, .. } => Payload::PasswordChanged {
                full_name: full_name.clone(),
            },
            Mail::AccountDeleted { full_name, .. } => Payload::AccountDeleted {
                full_name: full_name.clone(),
            },
            Mail::EmailChangeRequested { full_name, .. } => Payload::EmailChangeRequested {
                full_name: full_name.clone(),
            },
            Mail::EmailChanged { full_name, .. } => Payload::EmailChanged {
                full_name: full_name.clone(),
            },
        };
        let payload =
            serde_json::to_string(&payload).map_err(|e| InfraError::Unexpected(e.into()))?;
        let id = Uuid::new_v4().to_string();
        let recipient = mail.recipient().as_str().to_owned();
        let payload = key.seal(&payload, &id, &recipient)?;
        Ok(Self {
            id,
            recipient,
            kind: kind(mail).to_owned(),
            payload: Some(payload),
            status: OutboxStatus::Queued.as_str().to_owned(),
            attempts: 0,
            next_attempt_at: to_millis(now),
            expires_at: expires_at.map(to_millis),
            created_at: to_millis(now),
            updated_at: to_millis(now),
            otp_id: otp_id.map(|id| id.to_string()),
        })
    }

    /// This row's INSERT, made only if account `user` still exists (`INSERT ...
    /// SELECT ... FROM users WHERE id = ...`): a notice of a change that its
    /// transaction may find the account gone for, without a savepoint to undo it by
    /// (PostgreSQL's pipelined change, `change_tx`).
    pub(crate) fn insert_for_account<'a>(
        &'a self,
        user: &'a str,
    ) -> impl diesel_async::methods::ExecuteDsl<&'a diesel_async::AsyncPgConnection> + Send + 'a
    {
        use crate::cached::CachedExt as _;
        use crate::schema::users;
        let values = users::table.filter(users::id.eq(user)).select((
            self.id.as_str().into_sql::<Text>(),
            self.recipient.as_str().into_sql::<Text>(),
            self.kind.as_str().into_sql::<Text>(),
            self.payload.as_deref().into_sql::<Nullable<Text>>(),
            self.status.as_str().into_sql::<Text>(),
            self.attempts.into_sql::<Integer>(),
            self.next_attempt_at.into_sql::<BigInt>(),
            self.expires_at.into_sql::<Nullable<BigInt>>(),
            self.created_at.into_sql::<BigInt>(),
            self.updated_at.into_sql::<BigInt>(),
            self.otp_id.as_deref().into_sql::<Nullable<Text>>(),
        ));
        diesel::insert_into(outbox::table)
            .values(values)
            .into_columns((
                outbox::id,
                outbox::recipient,
                outbox::kind,
                outbox::payload,
                outbox::status,
                outbox::attempts,
                outbox::next_attempt_at,
                outbox::expires_at,
                outbox::created_at,
                outbox::updated_at,
                outbox::otp_id,
            ))
            .cached()
    }

    /// A message that is never sent: recorded as expired, with no body. The same
    /// insert as a real one (see `OtpStore::decoy`).
    pub(crate) fn decoy(
        recipient: &EmailAddress,
        now: chrono::DateTime<chrono::Utc>,
        otp_id: Uuid,
    ) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            recipient: recipient.as_str().to_owned(),
            kind: "decoy".to_owned(),
            payload: None,
            status: OutboxStatus::Expired.as_str().to_owned(),
            attempts: 0,
            next_attempt_at: to_millis(now),
            expires_at: Some(to_millis(now)),
            created_at: to_millis(now),
            updated_at: to_millis(now),
            otp_id: Some(otp_id.to_string()),
        }
    }
}

/// A claimed message: by name from the claim's SQL, or by position (MariaDB's claim).
#[derive(QueryableByName, Queryable)]
pub(crate) struct ClaimedRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    recipient: String,
    #[diesel(sql_type = Nullable<Text>)]
    payload: Option<String>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    expires_at: Option<i64>,
}

impl ClaimedRow {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The message, or why it cannot be read (then it can never be sent).
    pub(crate) fn into_domain(self, key: &MailKey) -> Result<QueuedMail, String> {
        let corrupt = |what: &str| format!("queued mail has a bad {what}");
        let sealed = self.payload.as_deref().ok_or_else(|| corrupt("body"))?;
        let body = key.open(sealed, &self.id, &self.recipient).ok_or_else(|| {
            "the body cannot be opened: sealed under another otp.secret, or damaged".to_owned()
        })?;
        let payload: Payload = serde_json::from_str(&body).map_err(|_| corrupt("body"))?;
        let to = EmailAddress::from_trusted(self.recipient);
        let mail = match payload {
            Payload::Code {
                full_name,
                code,
                purpose,
                valid_for_seconds,
            } => Mail::Code {
                to,
                full_name,
                code: OtpCode::new(code),
                purpose: OtpPurpose::parse(&purpose).ok_or_else(|| corrupt("purpose"))?,
                valid_for: Duration::seconds(valid_for_seconds),
            },
            Payload::RegistrationAttempt { full_name } => {
                Mail::RegistrationAttempt { to, full_name }
            }
            Payload::PasswordChanged { full_name } => Mail::PasswordChanged { to, full_name },
            Payload::AccountDeleted { full_name } => Mail::AccountDeleted { to, full_name },
            Payload::EmailChangeRequested { full_name } => {
                Mail::EmailChangeRequested { to, full_name }
            }
            Payload::EmailChanged { full_name } => Mail::EmailChanged { to, full_name },
        };
        Ok(QueuedMail {
            id: Uuid::parse_str(&self.id).map_err(|_| corrupt("id"))?,
            mail,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            expires_at: self.expires_at.map(from_millis),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub(crate) struct EntryRow {
    id: String,
    recipient: String,
    kind: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: i64,
    next_attempt_at: i64,
}

impl EntryRow {
    pub(crate) fn into_domain(self) -> Result<OutboxEntry, InfraError> {
        Ok(OutboxEntry {
            id: Uuid::parse_str(&self.id).map_err(|e| InfraError::Unexpected(e.into()))?,
            recipient: self.recipient,
            kind: self.kind,
            status: OutboxStatus::parse(&self.status)
                .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("bad outbox status")))?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            last_error: self.last_error,
            created_at: from_millis(self.created_at),
            next_attempt_at: from_millis(self.next_attempt_at),
        })
    }
}

/// Claims due messages. Binds: $1 lease end, $2 now, $3 how many. A message is due
/// when queued and its time has come, or when a worker's lease on it ran out.
pub(crate) const CLAIM_SQLITE: &str = "\
UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1, updated_at = $2 \
WHERE id IN (SELECT id FROM outbox WHERE (status = 'queued' AND next_attempt_at <= $2) \
OR (status = 'sending' AND lease_until < $2) ORDER BY next_attempt_at LIMIT $3) \
RETURNING id, recipient, payload, attempts, expires_at";

/// PostgreSQL's claim: rows locked by another instance's claim are skipped, not waited for.
pub(crate) const CLAIM_POSTGRES: &str = "\
UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1, updated_at = $2 \
WHERE id IN (SELECT id FROM outbox WHERE (status = 'queued' AND next_attempt_at <= $2) \
OR (status = 'sending' AND lease_until < $2) ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
RETURNING id, recipient, payload, attempts, expires_at";
