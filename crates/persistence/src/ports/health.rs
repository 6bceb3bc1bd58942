//! `HealthCheck`: one round trip to the database.

macro_rules! health_check {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use diesel_async::RunQueryDsl;
            use passcode_domain::InfraError;
            use passcode_domain::ports::HealthCheck;
            use $crate::error::query_error;

            #[async_trait]
            impl HealthCheck for $store {
                async fn check(&self) -> Result<(), InfraError> {
                    let mut conn = self.conn().await?;
                    diesel::sql_query("SELECT 1")
                        .execute(&mut *conn)
                        .await
                        .map_err(query_error)?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use health_check;
