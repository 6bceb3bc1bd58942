//! `Throttle`: limits shared by every instance, each event counted by one conditional
//! upsert (`shared::reserve`).

macro_rules! throttle {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use passcode_domain::InfraError;
            use passcode_domain::ports::{Admission, Admissions, Limit, Throttle};
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::schema::{otp_codes, outbox, rate_limits, sessions};
            use $crate::time::to_millis;

            #[async_trait]
            impl Throttle for $store {
                async fn acquire(
                    &self,
                    key: &str,
                    limit: Limit,
                    now: DateTime<Utc>,
                ) -> Result<Admission, InfraError> {
                    let mut conn = self.writer().await?;
                    Ok(
                        match self::shared::reserve(&mut *conn, key, limit, now)
                            .await
                            .map_err(query_error)?
                        {
                            None => Admission::Allowed,
                            Some(retry_after) => Admission::Denied { retry_after },
                        },
                    )
                }

                async fn acquire_all(
                    &self,
                    budgets: &[(String, Limit)],
                    now: DateTime<Utc>,
                ) -> Result<Admissions, InfraError> {
                    self.acquire_all_tx(budgets, now).await
                }

                async fn release(&self, keys: &[String]) -> Result<(), InfraError> {
                    use diesel_async::AsyncConnection as _;
                    let mut conn = self.writer().await?;
                    if let [key] = keys {
                        $crate::rows::release_query!(key)
                            .cached()
                            .execute(&mut *conn)
                            .await
                            .map_err(query_error)?;
                        return Ok(());
                    }
                    (*conn)
                        .transaction(async |conn| self::shared::give_back(conn, keys).await)
                        .await
                        .map_err(query_error)
                }

                async fn purge(
                    &self,
                    now: DateTime<Utc>,
                    retention: chrono::Duration,
                ) -> Result<u64, InfraError> {
                    let cutoff = to_millis(now - retention);
                    let mut conn = self.writer().await?;
                    let limits = diesel::delete(
                        rate_limits::table
                            .filter(rate_limits::last_at.lt(cutoff))
                            .filter(rate_limits::window_start.lt(cutoff)),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    let codes =
                        diesel::delete(otp_codes::table.filter(otp_codes::expires_at.lt(cutoff)))
                            .execute(&mut *conn)
                            .await
                            .map_err(query_error)?;
                    let mail = diesel::delete(
                        outbox::table
                            .filter(outbox::status.eq_any(["sent", "expired"]))
                            .filter(outbox::updated_at.lt(cutoff)),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    // Sessions whose live token expired, or that ended or were revoked,
                    // before the cutoff.
                    let sessions = diesel::delete(
                        sessions::table.filter(
                            sessions::expires_at
                                .lt(cutoff)
                                .or(sessions::family_expires_at.lt(cutoff))
                                .or(sessions::revoked_at.lt(cutoff)),
                        ),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(u64::try_from(limits + codes + mail + sessions).unwrap_or(0))
                }
            }
        };
    };
}

pub(crate) use throttle;
