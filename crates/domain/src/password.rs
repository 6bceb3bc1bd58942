//! Passwords (kept secret in memory) and their stored hashes.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("This field may not be blank.")]
    Empty,
    #[error("Ensure this field has at least 8 characters.")]
    TooShort,
    #[error("Ensure this field has no more than 128 characters.")]
    TooLong,
}

/// A password a user typed. Never printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Checks the length policy (8..=128 characters) of a new password.
    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(PasswordError::Empty);
        }
        if chars < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// A password offered at login: only the upper bound applies (it caps hashing
    /// work), so that a policy change never locks out an existing account.
    pub fn for_login(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(PasswordError::Empty);
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A PHC-format password hash as stored (for example `$argon2id$v=19$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// No password: an account that signs in by code only (its unverified
    /// registration's password was cleared). Nothing verifies against it.
    pub fn unset() -> Self {
        Self(String::new())
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_enforces_length_in_characters() {
        assert_eq!(
            Password::parse(String::new()).unwrap_err(),
            PasswordError::Empty
        );
        assert_eq!(
            Password::parse("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert!(Password::parse("ééééééé€".into()).is_ok());
        assert_eq!(
            Password::parse("x".repeat(129)).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(Password::parse("x".repeat(128)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let password = Password::parse("hunter22-secret".into()).unwrap();
        assert!(!format!("{password:?}").contains("hunter22"));
    }
}

/// How many characters of a password its strength estimate reads. zxcvbn's cost
/// grows with the square of the length, and more with the l33t characters in it: a
/// crafted 128-character password took 0.35 s, its first 64 characters 0.16 s, a
/// typical 36-character passphrase 1 ms. A password whose first 64 characters are
/// hard to guess is hard to guess; one whose first 64 are not is refused.
pub const ESTIMATED_CHARS: usize = 64;

/// The zxcvbn strength estimate of a new password's first `ESTIMATED_CHARS`
/// characters, 0 (guessable) to 4 (strong), counting the user's own email and name
/// as known words. `Some(message)` when below `min_score`.
pub fn strength_problem(
    password: &Password,
    user_inputs: &[&str],
    min_score: u8,
) -> Option<String> {
    if min_score == 0 {
        return None;
    }
    // zxcvbn matches user inputs as whole words: give it the words of each.
    let words: Vec<String> = user_inputs
        .iter()
        .flat_map(|input| input.split(|c: char| !c.is_alphanumeric()))
        .filter(|word| word.len() >= 3)
        .map(str::to_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let estimated: String = password.expose().chars().take(ESTIMATED_CHARS).collect();
    let estimate = zxcvbn::zxcvbn(&estimated, &words);
    if u8::from(estimate.score()) >= min_score {
        return None;
    }
    let mut message = String::from("This password is too easy to guess.");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!(" {warning}."));
        }
        if let Some(suggestion) = feedback.suggestions().first() {
            message.push_str(&format!(" {suggestion}."));
        }
    }
    Some(message.replace("..", "."))
}

#[cfg(test)]
mod strength_tests {
    use super::*;

    #[test]
    fn common_and_personal_passwords_are_weak() {
        for weak in ["password123", "qwertyuiop", "adalovelace", "lovelace1234"] {
            let password = Password::parse(weak.into()).unwrap();
            assert!(
                strength_problem(&password, &["ada.lovelace@example.com", "Ada Lovelace"], 3)
                    .is_some(),
                "{weak}"
            );
        }
    }

    #[test]
    fn long_unusual_passwords_pass_and_zero_disables_the_check() {
        let strong = Password::parse("correct horse battery staple".into()).unwrap();
        assert_eq!(strength_problem(&strong, &[], 3), None);
        let weak = Password::parse("password".into()).unwrap();
        assert_eq!(strength_problem(&weak, &[], 0), None);
    }

    /// Only the first `ESTIMATED_CHARS` are estimated: a guessable start is refused
    /// whatever follows (the whole of this one scores 4), and any length costs at most
    /// what 64 characters cost.
    #[test]
    fn only_the_first_64_characters_are_estimated() {
        let tail = "Kq7#vLz9!wQp2@xRt5$mNb8&cYh3^dFg6";
        let whole = format!("{}{tail}", "a".repeat(ESTIMATED_CHARS));
        assert!(
            zxcvbn::zxcvbn(&whole, &[]).score() >= zxcvbn::Score::Three,
            "the whole password is strong"
        );
        let password = Password::parse(whole).unwrap();
        assert!(strength_problem(&password, &[], 3).is_some());
        let strong_start = Password::parse(format!("{tail}{}", "a".repeat(90))).unwrap();
        assert_eq!(strength_problem(&strong_start, &[], 3), None);
    }
}
