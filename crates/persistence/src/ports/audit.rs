//! `AuditLog`: security events, kept without secrets.

macro_rules! audit_log {
    ($store:ty) => {
        const _: () = {
            use self::shared::audit;
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use passcode_domain::InfraError;
            use $crate::error::query_error;
            use $crate::schema::audit_events;
            use $crate::time::to_millis;

            #[async_trait]
            impl passcode_domain::ports::AuditLog for $store {
                async fn record(
                    &self,
                    event: &passcode_domain::AuditEvent,
                ) -> Result<(), InfraError> {
                    let mut conn = self.writer().await?;
                    audit(&mut conn, event).await.map_err(query_error)
                }

                async fn list(
                    &self,
                    query: &passcode_domain::AuditQuery,
                ) -> Result<Vec<passcode_domain::AuditEvent>, InfraError> {
                    use $crate::rows::AuditRow;
                    let mut conn = self.conn().await?;
                    let mut select = audit_events::table
                        .select(AuditRow::as_select())
                        .order(audit_events::at.desc())
                        .limit(i64::from(query.limit.max(1)))
                        .into_boxed();
                    if let Some(email) = &query.email {
                        select = select.filter(audit_events::email.eq(email.as_str().to_owned()));
                    }
                    if let Some(since) = query.since {
                        select = select.filter(audit_events::at.ge(to_millis(since)));
                    }
                    let rows: Vec<AuditRow> = select.load(&mut *conn).await.map_err(query_error)?;
                    rows.into_iter().map(AuditRow::into_domain).collect()
                }

                async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, InfraError> {
                    let mut conn = self.writer().await?;
                    let removed = diesel::delete(
                        audit_events::table.filter(audit_events::at.lt(to_millis(before))),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(query_error)?;
                    Ok(u64::try_from(removed).unwrap_or(0))
                }
            }
        };
    };
}

pub(crate) use audit_log;
