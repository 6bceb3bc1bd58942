//! `OtpStore`: codes. A code and the mail that carries it are written together; spending
//! a code is one conditional statement, so of concurrent spenders only one succeeds.

macro_rules! otp_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use passcode_domain::otp::{NewOtp, StoredOtp};
            use passcode_domain::ports::{Admission, Issue, Limit, Mail, OtpStore, Spend, Tries};
            use passcode_domain::{EmailAddress, InfraError, OtpPurpose, UserId};
            use uuid::Uuid;
            use $crate::error::query_error;
            use $crate::outbox_rows::NewOutboxRow;
            use $crate::rows::{OtpRow, SealedChange};
            use $crate::schema::otp_codes;
            use $crate::time::to_millis;

            #[async_trait]
            impl OtpStore for $store {
                async fn replace<'a>(
                    &self,
                    otp: &NewOtp,
                    mail: &Mail,
                    issue: &Issue<'a>,
                ) -> Result<Admission, InfraError> {
                    let code_row = OtpRow::new(otp);
                    let mail_row = NewOutboxRow::new(
                        mail,
                        otp.created_at,
                        Some(otp.expires_at),
                        &self.mail_key,
                        Some(otp.id),
                    )?;
                    issued(self, code_row, mail_row, issue, otp.created_at).await
                }

                async fn add(
                    &self,
                    otp: &NewOtp,
                    mail: &Mail,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let code_row = OtpRow::new(otp);
                    let mail_row = NewOutboxRow::new(
                        mail,
                        otp.created_at,
                        Some(otp.expires_at),
                        &self.mail_key,
                        Some(otp.id),
                    )?;
                    self.add_tx($crate::rows::FirstCodeRows {
                        code: code_row,
                        mail: mail_row,
                        event: $crate::rows::AuditRow::new(event),
                    })
                    .await
                }

                async fn decoy<'a>(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                    now: DateTime<Utc>,
                    issue: &Issue<'a>,
                ) -> Result<Admission, InfraError> {
                    // Its own purpose, already spent, with a random hash: nothing reads
                    // it as a code, nothing can match it, and the purge removes it.
                    let id = Uuid::new_v4();
                    let row = OtpRow {
                        id: id.to_string(),
                        email: email.as_str().to_owned(),
                        purpose: format!("decoy_{}", purpose.as_str()),
                        code_hash: Uuid::new_v4().as_bytes().repeat(2),
                        attempts: 0,
                        consumed_at: Some(to_millis(now)),
                        created_at: to_millis(now),
                        expires_at: to_millis(now),
                        full_name: None,
                        password_hash: None,
                        user_id: None,
                    };
                    let mail_row = NewOutboxRow::decoy(email, now, id);
                    issued(self, row, mail_row, issue, now).await
                }

                async fn find(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                ) -> Result<Option<StoredOtp>, InfraError> {
                    let mut conn = self.conn().await?;
                    otp_codes::table
                        .filter(otp_codes::email.eq(email.as_str()))
                        .filter(otp_codes::purpose.eq(purpose.as_str()))
                        .order(otp_codes::created_at.desc())
                        .select(OtpRow::as_select())
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(OtpRow::into_domain)
                        .transpose()
                }

                async fn count_try(
                    &self,
                    email: &EmailAddress,
                    purpose: OtpPurpose,
                    now: DateTime<Utc>,
                    max_attempts: u32,
                    budgets: &[(String, Limit)],
                ) -> Result<Tries, InfraError> {
                    // The hot path of every guess: each backend runs it its own fastest
                    // way (sqlite.rs: one trip to the blocking thread; postgres.rs:
                    // pipelined).
                    self.count_try_tx(email, purpose, now, max_attempts, budgets)
                        .await
                }

                async fn consume<'a>(&self, spend: &Spend<'a>) -> Result<bool, InfraError> {
                    let Some(account) = spend.account else {
                        if spend.give_back.keys.is_empty() && spend.session.is_none() {
                            let mut conn = self.writer().await?;
                            return self::shared::spend_code(&mut *conn, spend)
                                .await
                                .map_err(query_error);
                        }
                        // Each backend's own way, as a registration's completion.
                        return self
                            .spend_tx($crate::rows::SpendRows::new(spend, None)?)
                            .await;
                    };
                    // Each backend's own way (`postgres.rs`: pipelined; `change_writes!`:
                    // statement by statement).
                    let change = SealedChange::new(account, spend.now, &self.mail_key)?;
                    self.change_tx(spend, &change).await
                }

                async fn complete_registration<'a>(
                    &self,
                    spend: &Spend<'a>,
                    user: UserId,
                    registration: &passcode_domain::Registration,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    // Each backend's own way (`sqlite.rs`: one trip to the writer;
                    // `postgres.rs`: pipelined; `code_writes!`: statement by statement).
                    let registration =
                        $crate::rows::RegistrationRows::new(user, registration, event);
                    self.spend_tx($crate::rows::SpendRows::new(spend, Some(registration))?)
                        .await
                }
            }

            /// Writes a code's (or a decoy's) row and its mail with `issue`: the
            /// backend's `issue_tx` (`sqlite.rs`, `postgres.rs`, or `code_writes!`).
            async fn issued(
                store: &$store,
                code: OtpRow,
                mail: NewOutboxRow,
                issue: &Issue<'_>,
                now: DateTime<Utc>,
            ) -> Result<Admission, InfraError> {
                let notice = issue
                    .notice
                    .map(|notice| NewOutboxRow::new(notice, now, None, &store.mail_key, None))
                    .transpose()?;
                store.issue_tx(code, mail, notice, issue, now).await
            }
        };
    };
}

pub(crate) use otp_store;

/// `OtpStore::consume` with an account change, statement by statement in one
/// transaction (SQLite's and MariaDB's; PostgreSQL pipelines the same statements,
/// `postgres.rs`): the spend's budgets given back, its code spent (all rolled back if
/// it is not), the change (`set_password`, `move_email` or `erase`; a refused one
/// rolls back too), then its session started.
macro_rules! change_writes {
    ($store:ty) => {
        const _: () = {
            use self::shared::{
                erase, give_back, move_email, refused, set_password, spend_code, start_session,
            };
            use diesel::result::Error::RollbackTransaction;
            use diesel_async::AsyncConnection;
            use passcode_domain::InfraError;
            use passcode_domain::ports::Spend;
            use $crate::rows::SealedChange;
            use $crate::time::to_millis;

            impl $store {
                pub(crate) async fn change_tx(
                    &self,
                    spend: &Spend<'_>,
                    change: &SealedChange<'_>,
                ) -> Result<bool, InfraError> {
                    let now = to_millis(spend.now);
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            // The budgets' rows are locked before the code's, in the
                            // order a guess locks them (`count_try`): no deadlock.
                            give_back(conn, spend.give_back).await?;
                            if !spend_code(conn, spend).await? {
                                return Err(RollbackTransaction);
                            }
                            match change {
                                SealedChange::Password(password, notice) => {
                                    set_password(
                                        conn,
                                        &password.user.0.to_string(),
                                        password.hash,
                                        password.verify_email,
                                        now,
                                        password.audit,
                                        notice.as_ref(),
                                    )
                                    .await?
                                }
                                SealedChange::Email(change, event, notice) => {
                                    move_email(conn, change, now, event, notice).await?
                                }
                                SealedChange::Delete(user, email, event, goodbye) => {
                                    erase(conn, &user.0.to_string(), email.as_str(), event, goodbye)
                                        .await?
                                }
                            }
                            if let Some((token, event)) = spend.session {
                                start_session(conn, token, event).await?;
                            }
                            Ok::<bool, diesel::result::Error>(true)
                        })
                        .await
                        .or_else(refused)
                }
            }
        };
    };
}

pub(crate) use change_writes;

/// A new code's writes statement by statement, each in one transaction (MariaDB's;
/// SQLite runs the same statements in one trip to its writer, PostgreSQL pipelines
/// them). The backend's dialect says whether its send limit is counted inside the
/// transaction (`LIMITS_IN_TRANSACTION`) or in a commit of its own just before.
/// - `issue_tx`, `OtpStore::replace` and `decoy`'s: the send limit counted first (a
///   refusal rolls everything back), `issue`'s keys given back, the earlier codes of
///   the row's address and purpose deleted with their waiting mail, the row and its
///   mail written, the notice queued;
/// - `add_tx`, `OtpStore::add`'s: the row, its mail and its event;
/// - `spend_tx`, `OtpStore::complete_registration`'s and `consume`'s without an
///   account change: `SpendRows`' writes in its order.
macro_rules! code_writes {
    ($store:ty) => {
        const _: () = {
            use self::shared::{
                audit_row, delete_codes, give_back, insert_code, queue, refused, reserve,
            };
            use chrono::{DateTime, Utc};
            use diesel_async::AsyncConnection;
            use passcode_domain::InfraError;
            use passcode_domain::ports::{Admission, Issue};
            use $crate::error::query_error;
            use $crate::outbox_rows::NewOutboxRow;
            use $crate::rows::{Abort, OtpRow};
            use $crate::time::to_millis;

            impl $store {
                pub(crate) async fn issue_tx(
                    &self,
                    code: OtpRow,
                    mail: NewOutboxRow,
                    notice: Option<NewOutboxRow>,
                    issue: &Issue<'_>,
                    now: DateTime<Utc>,
                ) -> Result<Admission, InfraError> {
                    let mut conn = self.writer().await?;
                    let mut send = issue.send;
                    if !self::dialect::LIMITS_IN_TRANSACTION
                        && let Some((key, limit)) = send.take()
                        && let Some(retry_after) = reserve(&mut *conn, key, limit, now)
                            .await
                            .map_err(query_error)?
                    {
                        return Ok(Admission::Denied { retry_after });
                    }
                    let now_ms = to_millis(now);
                    let written = (*conn)
                        .transaction(async |conn| {
                            if let Some((key, limit)) = send
                                && let Some(retry_after) = reserve(conn, key, limit, now).await?
                            {
                                return Err(Abort::Refused(0, retry_after));
                            }
                            give_back(conn, issue.give_back).await?;
                            delete_codes(conn, &code.email, &code.purpose, None, now_ms).await?;
                            insert_code(conn, &code, &mail).await?;
                            if let Some(notice) = &notice {
                                queue(conn, notice).await?;
                            }
                            Ok::<(), Abort>(())
                        })
                        .await;
                    $crate::rows::admission(written)
                }

                pub(crate) async fn add_tx(
                    &self,
                    rows: $crate::rows::FirstCodeRows,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            insert_code(conn, &rows.code, &rows.mail).await?;
                            audit_row(conn, &rows.event).await
                        })
                        .await
                        .map_err(query_error)
                }

                pub(crate) async fn spend_tx(
                    &self,
                    rows: $crate::rows::SpendRows,
                ) -> Result<bool, InfraError> {
                    use diesel::result::Error::RollbackTransaction;
                    use diesel_async::RunQueryDsl;
                    use $crate::cached::CachedExt as _;
                    use $crate::rows::{
                        apply_registration_query, new_session_query, registered_email,
                        release_query, spend_code_query,
                    };
                    let r = &rows;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            for key in &r.give_back {
                                release_query!(key, r.reserved_at)
                                    .cached()
                                    .execute(conn)
                                    .await?;
                            }
                            let spent =
                                spend_code_query!(&r.code, &r.code_hash, r.now, r.most_tries)
                                    .cached()
                                    .execute(conn)
                                    .await?;
                            if spent != 1 {
                                return Err(RollbackTransaction);
                            }
                            if let Some(registration) = &r.registration {
                                if apply_registration_query!(&r.code, registration, r.now)
                                    .cached()
                                    .execute(conn)
                                    .await?
                                    != 1
                                {
                                    return Err(RollbackTransaction);
                                }
                                let purpose = passcode_domain::OtpPurpose::VerifyEmail.as_str();
                                let email = || registered_email!(&registration.user);
                                $crate::rows::expire_replaced_mail_query!(
                                    email(),
                                    purpose,
                                    &r.code,
                                    r.now
                                )
                                .cached()
                                .execute(conn)
                                .await?;
                                $crate::rows::delete_replaced_codes_query!(
                                    email(),
                                    purpose,
                                    &r.code
                                )
                                .execute(conn)
                                .await?;
                                audit_row(conn, &registration.verified).await?;
                            }
                            if let Some((token, event)) = &r.session {
                                new_session_query!(token).execute(conn).await?;
                                if let Some(event) = event {
                                    audit_row(conn, event).await?;
                                }
                            }
                            Ok(true)
                        })
                        .await
                        .or_else(refused)
                }
            }
        };
    };
}
pub(crate) use code_writes;
