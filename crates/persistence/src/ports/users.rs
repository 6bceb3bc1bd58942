//! `UserRepository`: accounts. Every change that the audit trail records writes its
//! event in the same transaction.

macro_rules! user_repository {
    ($store:ty) => {
        const _: () = {
            use self::shared::{audit, erase, give_back, refused, set_password};
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::ports::{CreateUserError, FirstCode, Mail, UserRepository};
            use passcode_domain::{EmailAddress, InfraError, NewUser, User, UserId};
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::outbox_rows::NewOutboxRow;
            use $crate::rows::{AuditRow, FirstCodeRows, OtpRow, UserRow};
            use $crate::schema::users;
            use $crate::time::to_millis;

            #[async_trait]
            impl UserRepository for $store {
                async fn create<'a>(
                    &self,
                    user: &NewUser,
                    first_code: Option<&'a FirstCode>,
                ) -> Result<User, CreateUserError> {
                    // The row as written is the row stored (no defaults apply), so no
                    // RETURNING, which MariaDB lacks.
                    let row = UserRow::new(user);
                    let code = first_code
                        .map(|first| -> Result<_, InfraError> {
                            let otp = &first.otp;
                            let mail = NewOutboxRow::new(
                                &first.mail,
                                otp.created_at,
                                Some(otp.expires_at),
                                &self.mail_key,
                                Some(otp.id),
                            )?;
                            Ok(FirstCodeRows {
                                code: OtpRow::new(otp),
                                mail,
                                event: AuditRow::new(&first.audit),
                            })
                        })
                        .transpose()?;
                    // Each backend's own: pipelined in one round trip on PostgreSQL,
                    // statement by statement on MariaDB (`create_user!`), in one trip
                    // and one batch on SQLite.
                    Ok(self.create_user_tx(row, code).await?.into_domain()?)
                }

                async fn find_by_email(
                    &self,
                    email: &EmailAddress,
                ) -> Result<Option<User>, InfraError> {
                    let mut conn = self.conn().await?;
                    users::table
                        .filter(users::email.eq(email.as_str()))
                        .select(UserRow::as_select())
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(UserRow::into_domain)
                        .transpose()
                }

                async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
                    let mut conn = self.conn().await?;
                    users::table
                        .find(id.0.to_string())
                        .select(UserRow::as_select())
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(query_error)?
                        .map(UserRow::into_domain)
                        .transpose()
                }

                async fn mark_email_verified(
                    &self,
                    id: UserId,
                    at: DateTime<Utc>,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    diesel::update(users::table.find(id.0.to_string()))
                        .set((
                            users::email_verified.eq(true),
                            users::updated_at.eq(to_millis(at)),
                        ))
                        .cached()
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }

                async fn set_active(
                    &self,
                    id: UserId,
                    active: bool,
                    at: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            diesel::update(users::table.find(id.0.to_string()))
                                .set((
                                    users::is_active.eq(active),
                                    users::updated_at.eq(to_millis(at)),
                                ))
                                .cached()
                                .execute(conn)
                                .await?;
                            audit(conn, event).await
                        })
                        .await
                        .map_err(query_error)
                }

                async fn delete(
                    &self,
                    id: UserId,
                    email: &EmailAddress,
                    goodbye: &Mail,
                    now: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<bool, InfraError> {
                    let address = email.as_str().to_owned();
                    let user = id.0.to_string();
                    let goodbye_row = NewOutboxRow::new(goodbye, now, None, &self.mail_key, None)?;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            erase(conn, &user, &address, event, &goodbye_row).await?;
                            Ok::<bool, diesel::result::Error>(true)
                        })
                        .await
                        .or_else(refused)
                }

                async fn set_password<'a>(
                    &self,
                    id: UserId,
                    hash: &passcode_domain::PasswordHash,
                    verify_email: bool,
                    at: DateTime<Utc>,
                    event: &passcode_domain::AuditEvent,
                    notice: Option<&'a Mail>,
                    returned: passcode_domain::ports::GiveBack<'a>,
                ) -> Result<(), InfraError> {
                    let cutoff = to_millis(at);
                    let user = id.0.to_string();
                    let notice_row = notice
                        .map(|mail| NewOutboxRow::new(mail, at, None, &self.mail_key, None))
                        .transpose()?;
                    let mut conn = self.writer().await?;
                    (*conn)
                        .transaction(async |conn| {
                            set_password(
                                conn,
                                &user,
                                hash,
                                verify_email,
                                cutoff,
                                event,
                                notice_row.as_ref(),
                            )
                            .await?;
                            // After the account's row: erasing an account locks its
                            // row, then its limits' rows.
                            give_back(conn, returned).await
                        })
                        .await
                        .map_err(query_error)
                }
            }
        };
    };
}

pub(crate) use user_repository;

/// `UserRepository::create` statement by statement, as the method `$method` of
/// `$store` (MariaDB's; PostgreSQL's and SQLite's run in one trip): the account, and its first code with the code's mail and its event, in
/// one transaction. Answers the row as written.
macro_rules! create_user {
    ($store:ty, $method:ident) => {
        const _: () = {
            use self::shared::{audit_row, insert_code};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use passcode_domain::ports::CreateUserError;
            use $crate::cached::CachedExt as _;
            use $crate::error::create_user_error;
            use $crate::rows::{FirstCodeRows, UserRow};
            use $crate::schema::users;

            impl $store {
                pub(crate) async fn $method(
                    &self,
                    row: UserRow,
                    first_code: Option<FirstCodeRows>,
                ) -> Result<UserRow, CreateUserError> {
                    let mut conn = self.writer().await?;
                    let insert = diesel::insert_into(users::table).values(&row).cached();
                    match &first_code {
                        None => insert.execute(&mut *conn).await.map(drop),
                        Some(first) => {
                            (*conn)
                                .transaction(async |conn| {
                                    insert.execute(conn).await?;
                                    insert_code(conn, &first.code, &first.mail).await?;
                                    audit_row(conn, &first.event).await
                                })
                                .await
                        }
                    }
                    .map_err(create_user_error)?;
                    Ok(row)
                }
            }
        };
    };
}
pub(crate) use create_user;
