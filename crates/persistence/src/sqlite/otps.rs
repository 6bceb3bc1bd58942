//! `OtpStore` on SQLite. Consume and try-counting are single conditional UPDATEs,
//! so SQLite's write lock makes each atomic: exactly one concurrent caller wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use passcode_domain::otp::{NewOtp, StoredOtp};
use passcode_domain::ports::OtpStore;
use passcode_domain::{CodeHash, EmailAddress, InfraError, OtpPurpose};
use uuid::Uuid;

use super::SqliteStore;
use crate::error::query_error;
use crate::schema::otp_codes;
use crate::time::{from_millis, to_millis};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = otp_codes)]
struct OtpRow {
    id: String,
    email: String,
    purpose: String,
    code_hash: Vec<u8>,
    attempts: i32,
    consumed_at: Option<i64>,
    created_at: i64,
    expires_at: i64,
}

impl OtpRow {
    fn into_domain(self) -> Result<StoredOtp, InfraError> {
        let corrupt =
            |what: &str| InfraError::Unexpected(anyhow::anyhow!("stored code has a bad {what}"));
        Ok(StoredOtp {
            id: Uuid::parse_str(&self.id).map_err(|_| corrupt("id"))?,
            email: EmailAddress::from_trusted(self.email),
            purpose: OtpPurpose::parse(&self.purpose).ok_or_else(|| corrupt("purpose"))?,
            code_hash: CodeHash::from_bytes(self.code_hash),
            expires_at: from_millis(self.expires_at),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            consumed: self.consumed_at.is_some(),
        })
    }
}

fn attempts_limit(max_attempts: u32) -> i32 {
    i32::try_from(max_attempts).unwrap_or(i32::MAX)
}

#[async_trait]
impl OtpStore for SqliteStore {
    async fn replace(&self, otp: &NewOtp) -> Result<(), InfraError> {
        let row = OtpRow {
            id: otp.id.to_string(),
            email: otp.email.as_str().to_owned(),
            purpose: otp.purpose.as_str().to_owned(),
            code_hash: otp.code_hash.as_bytes().to_vec(),
            attempts: 0,
            consumed_at: None,
            created_at: to_millis(otp.created_at),
            expires_at: to_millis(otp.expires_at),
        };
        let mut conn = self.conn().await?;
        // A new id as well as a new hash: a check begun against the old code cannot consume this one.
        diesel::insert_into(otp_codes::table)
            .values(&row)
            .on_conflict((otp_codes::email, otp_codes::purpose))
            .do_update()
            .set((
                otp_codes::id.eq(excluded(otp_codes::id)),
                otp_codes::code_hash.eq(excluded(otp_codes::code_hash)),
                otp_codes::attempts.eq(0),
                otp_codes::consumed_at.eq(None::<i64>),
                otp_codes::created_at.eq(excluded(otp_codes::created_at)),
                otp_codes::expires_at.eq(excluded(otp_codes::expires_at)),
            ))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(())
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
            .select(OtpRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?
            .map(OtpRow::into_domain)
            .transpose()
    }

    async fn consume(
        &self,
        id: Uuid,
        code_hash: &CodeHash,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<bool, InfraError> {
        let mut conn = self.conn().await?;
        let updated = diesel::update(
            otp_codes::table
                .filter(otp_codes::id.eq(id.to_string()))
                .filter(otp_codes::code_hash.eq(code_hash.as_bytes()))
                .filter(otp_codes::consumed_at.is_null())
                .filter(otp_codes::expires_at.gt(to_millis(now)))
                .filter(otp_codes::attempts.lt(attempts_limit(max_attempts))),
        )
        .set(otp_codes::consumed_at.eq(Some(to_millis(now))))
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
        Ok(updated == 1)
    }

    async fn record_failed_attempt(
        &self,
        id: Uuid,
        max_attempts: u32,
    ) -> Result<Option<u32>, InfraError> {
        let mut conn = self.conn().await?;
        let attempts: Option<i32> = diesel::update(
            otp_codes::table
                .filter(otp_codes::id.eq(id.to_string()))
                .filter(otp_codes::consumed_at.is_null())
                .filter(otp_codes::attempts.lt(attempts_limit(max_attempts))),
        )
        .set(otp_codes::attempts.eq(otp_codes::attempts + 1))
        .returning(otp_codes::attempts)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(query_error)?;
        Ok(attempts.map(|n| u32::try_from(n).unwrap_or(0)))
    }
}
