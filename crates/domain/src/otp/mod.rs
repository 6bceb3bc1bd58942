//! One-time codes: their purpose, the plaintext (secret, only ever in a mail), the
//! keyed hash that is stored, and the per-code rules (expiry, tries, single use).

mod generator;
mod hasher;

pub use generator::OsCodeGenerator;
pub use hasher::{CodeHash, OtpHasher};

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use uuid::Uuid;

use crate::{EmailAddress, FullName, PasswordHash};

/// What a code may be used for; a code is valid for its own purpose only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtpPurpose {
    VerifyEmail,
    ResetPassword,
    /// Sign in without a password (passwordless); the code proves the mailbox.
    SignIn,
    /// Move an account to a new address: the code goes to the new address.
    ChangeEmail,
}

impl OtpPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::SignIn => "sign_in",
            Self::ChangeEmail => "change_email",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            "sign_in" => Some(Self::SignIn),
            "change_email" => Some(Self::ChangeEmail),
            _ => None,
        }
    }
}

/// A plaintext code. Debug is redacted so it cannot reach a log by accident.
#[derive(Clone)]
pub struct OtpCode(SecretString);

impl OtpCode {
    pub fn new(digits: String) -> Self {
        Self(SecretString::from(digits))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode([REDACTED])")
    }
}

/// The rules for codes, from configuration.
#[derive(Debug, Clone)]
pub struct OtpSettings {
    /// Number of digits (6 by default).
    pub length: u8,
    /// How long a code stays valid.
    pub ttl: Duration,
    /// Wrong tries after which a code is dead.
    pub max_attempts: u32,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            length: 6,
            ttl: Duration::minutes(10),
            max_attempts: 5,
        }
    }
}

/// What one registration asked for: the name and password its code will put into
/// effect. A verification code carries its registration, so that entering it applies
/// that registration and no other (see `docs/security.md`, pre-registration takeover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub full_name: FullName,
    pub password_hash: PasswordHash,
}

/// A code about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOtp {
    pub id: Uuid,
    pub email: EmailAddress,
    pub purpose: OtpPurpose,
    pub code_hash: CodeHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Verification codes only: the registration this code completes.
    pub registration: Option<Registration>,
    /// Address-change codes only: the account the code moves.
    pub account: Option<crate::UserId>,
}

/// A stored code as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOtp {
    pub id: Uuid,
    pub email: EmailAddress,
    pub purpose: OtpPurpose,
    pub code_hash: CodeHash,
    pub expires_at: DateTime<Utc>,
    pub attempts: u32,
    pub consumed: bool,
    pub registration: Option<Registration>,
    pub account: Option<crate::UserId>,
}

impl StoredOtp {
    /// Whether the code can still be tried at `now`: not spent, not expired, tries left.
    pub fn is_open(&self, now: DateTime<Utc>, max_attempts: u32) -> bool {
        !self.consumed && now < self.expires_at && self.attempts < max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(attempts: u32, consumed: bool) -> StoredOtp {
        StoredOtp {
            id: Uuid::nil(),
            email: EmailAddress::parse("a@example.com").unwrap(),
            purpose: OtpPurpose::VerifyEmail,
            code_hash: CodeHash::from_bytes(vec![0; 32]),
            expires_at: DateTime::from_timestamp(1_000, 0).unwrap(),
            attempts,
            consumed,
            registration: None,
            account: None,
        }
    }

    #[test]
    fn code_is_open_only_before_expiry_with_tries_left_and_unspent() {
        let before = DateTime::from_timestamp(999, 0).unwrap();
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        assert!(stored(0, false).is_open(before, 5));
        assert!(
            !stored(0, false).is_open(at, 5),
            "expires exactly at expires_at"
        );
        assert!(!stored(5, false).is_open(before, 5));
        assert!(stored(4, false).is_open(before, 5));
        assert!(!stored(0, true).is_open(before, 5));
    }

    #[test]
    fn purpose_round_trips_through_its_stored_name() {
        for purpose in [
            OtpPurpose::VerifyEmail,
            OtpPurpose::ResetPassword,
            OtpPurpose::SignIn,
            OtpPurpose::ChangeEmail,
        ] {
            assert_eq!(OtpPurpose::parse(purpose.as_str()), Some(purpose));
        }
        assert_eq!(OtpPurpose::parse("other"), None);
    }

    #[test]
    fn code_debug_is_redacted() {
        assert!(!format!("{:?}", OtpCode::new("123456".into())).contains("123456"));
    }
}
