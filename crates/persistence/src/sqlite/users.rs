//! `UserRepository` on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use passcode_domain::ports::{CreateUserError, UserRepository};
use passcode_domain::{EmailAddress, FullName, InfraError, NewUser, PasswordHash, User, UserId};
use uuid::Uuid;

use super::SqliteStore;
use crate::error::{create_user_error, query_error};
use crate::schema::users;
use crate::time::{from_millis, to_millis};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    email: String,
    full_name: String,
    password_hash: String,
    email_verified: bool,
    is_active: bool,
    created_at: i64,
    updated_at: i64,
}

impl UserRow {
    fn into_domain(self) -> Result<User, InfraError> {
        let id = Uuid::parse_str(&self.id)
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("stored user id")))?;
        Ok(User {
            id: UserId(id),
            email: EmailAddress::from_trusted(self.email),
            full_name: FullName::from_trusted(self.full_name),
            password_hash: PasswordHash::new(self.password_hash),
            email_verified: self.email_verified,
            is_active: self.is_active,
            created_at: from_millis(self.created_at),
        })
    }
}

#[async_trait]
impl UserRepository for SqliteStore {
    async fn create(&self, user: &NewUser) -> Result<User, CreateUserError> {
        let row = UserRow {
            id: user.id.0.to_string(),
            email: user.email.as_str().to_owned(),
            full_name: user.full_name.as_str().to_owned(),
            password_hash: user.password_hash.as_str().to_owned(),
            email_verified: false,
            is_active: true,
            created_at: to_millis(user.created_at),
            updated_at: to_millis(user.created_at),
        };
        let mut conn = self.conn().await?;
        let stored = diesel::insert_into(users::table)
            .values(&row)
            .returning(UserRow::as_returning())
            .get_result(&mut conn)
            .await
            .map_err(create_user_error)?;
        Ok(stored.into_domain()?)
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, InfraError> {
        let mut conn = self.conn().await?;
        users::table
            .filter(users::email.eq(email.as_str()))
            .select(UserRow::as_select())
            .first(&mut conn)
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
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?
            .map(UserRow::into_domain)
            .transpose()
    }

    async fn mark_email_verified(&self, id: UserId, at: DateTime<Utc>) -> Result<(), InfraError> {
        let mut conn = self.conn().await?;
        diesel::update(users::table.find(id.0.to_string()))
            .set((
                users::email_verified.eq(true),
                users::updated_at.eq(to_millis(at)),
            ))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(())
    }
}
