//! Users as the domain knows them.

use crate::{EmailAddress, PasswordHash};
use chrono::{DateTime, Utc};
use std::fmt;
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FullNameError {
    #[error("This field may not be blank.")]
    Empty,
    #[error("Ensure this field has no more than 150 characters.")]
    TooLong,
    #[error("Control characters are not allowed.")]
    ControlCharacter,
}

/// A display name: trimmed, 1..=150 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, FullNameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(FullNameError::Empty);
        }
        if name.chars().count() > 150 {
            return Err(FullNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(FullNameError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: EmailAddress,
    pub full_name: FullName,
    pub password_hash: PasswordHash,
    pub email_verified: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// Tokens issued before this are refused (set when the password changes).
    pub tokens_valid_after: DateTime<Utc>,
}

impl User {
    /// Whether a token issued at `issued_at` still speaks for this account.
    pub fn accepts_token_issued_at(&self, issued_at: DateTime<Utc>) -> bool {
        self.is_active && issued_at >= self.tokens_valid_after
    }
}

/// What the repository needs to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub email: EmailAddress,
    pub full_name: FullName,
    pub password_hash: PasswordHash,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_name_is_trimmed_and_bounded() {
        assert_eq!(
            FullName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(FullName::parse(" ").unwrap_err(), FullNameError::Empty);
        assert_eq!(
            FullName::parse(&"a".repeat(151)).unwrap_err(),
            FullNameError::TooLong
        );
        assert_eq!(
            FullName::parse("a\u{0}b").unwrap_err(),
            FullNameError::ControlCharacter
        );
    }
}
