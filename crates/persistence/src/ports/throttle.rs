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
            use passcode_domain::ports::{Admission, Admissions, GiveBack, Limit, Throttle};
            use $crate::cached::CachedExt as _;
            use $crate::error::query_error;
            use $crate::schema::{otp_codes, outbox, rate_limits, sessions};
            use $crate::time::to_millis;

            /// `give_back` on `conn`: one statement for one key, one transaction for
            /// several.
            async fn release_on(
                conn: &mut Conn,
                give_back: GiveBack<'_>,
            ) -> Result<(), InfraError> {
                use diesel_async::AsyncConnection as _;
                if let [key] = give_back.keys {
                    $crate::rows::release_query!(key, to_millis(give_back.reserved_at))
                        .cached()
                        .execute(conn)
                        .await
                        .map_err(query_error)?;
                    return Ok(());
                }
                conn.transaction(async |conn| self::shared::give_back(conn, give_back).await)
                    .await
                    .map_err(query_error)
            }

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

                async fn release<'a>(&self, give_back: GiveBack<'a>) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    release_on(&mut conn, give_back).await
                }

                async fn release_at_once<'a>(
                    &self,
                    give_back: GiveBack<'a>,
                ) -> Result<bool, InfraError> {
                    let Some(mut conn) = self.writer_at_once().await? else {
                        return Ok(false);
                    };
                    release_on(&mut conn, give_back).await.map(|()| true)
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

/// What every backend's `release_at_once` must do, given a migrated `store` and
/// `hold`, which takes what a write needs (a connection, SQLite's writer's turn) and
/// keeps it until dropped: while it is held, give nothing back and answer at once
/// (a store that waited would answer its acquire timeout's error, or never); once
/// free, give back. Leaves the budget as it found it.
#[cfg(test)]
pub(crate) async fn check_release_at_once<S, H>(store: &S, hold: impl AsyncFn(&S) -> H)
where
    S: passcode_domain::ports::Throttle,
{
    use passcode_domain::ports::{Admission, GiveBack, Limit};
    let limit = Limit {
        limit: 1,
        window: chrono::Duration::hours(1),
        cooldown: chrono::Duration::zero(),
    };
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let keys = ["at-once".to_owned()];
    let give_back = GiveBack {
        keys: &keys,
        reserved_at: now,
    };
    assert_eq!(
        store.acquire(&keys[0], limit, now).await.unwrap(),
        Admission::Allowed
    );
    let held = hold(store).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        store.release_at_once(give_back).await
    })
    .await
    .expect("answered without waiting for what is held");
    assert!(!answer.unwrap(), "nothing free: nothing given back");
    drop(held);
    assert!(
        matches!(
            store.acquire(&keys[0], limit, now).await.unwrap(),
            Admission::Denied { .. }
        ),
        "the event is still counted"
    );
    assert!(
        store.release_at_once(give_back).await.unwrap(),
        "free: given back"
    );
    assert_eq!(
        store.acquire(&keys[0], limit, now).await.unwrap(),
        Admission::Allowed
    );
    store.release(give_back).await.unwrap();
}
