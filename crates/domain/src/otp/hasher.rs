//! Codes are stored only as HMAC-SHA-256 under a server secret, bound to the address
//! and purpose, so a leaked table yields neither codes nor a cheap offline search
//! without the secret.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

use super::{OtpCode, OtpPurpose};
use crate::EmailAddress;

/// The stored form of a code.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash(Vec<u8>);

impl CodeHash {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Constant-time comparison, so response timing says nothing about how close a guess was.
    pub fn matches(&self, other: &CodeHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

/// Keyed hashing of codes.
#[derive(Clone)]
pub struct OtpHasher {
    key: SecretSlice<u8>,
}

impl fmt::Debug for OtpHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpHasher([REDACTED])")
    }
}

impl OtpHasher {
    /// `key` should be at least 32 random bytes.
    pub fn new(key: Vec<u8>) -> Self {
        Self {
            key: SecretSlice::from(key),
        }
    }

    pub fn hash(&self, email: &EmailAddress, purpose: OtpPurpose, code: &OtpCode) -> CodeHash {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        // Length-prefixed fields: no two (purpose, email, code) triples share an input.
        for part in [purpose.as_str(), email.as_str(), code.expose()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        CodeHash(mac.finalize().into_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn hash_depends_on_key_address_purpose_and_code() {
        let hasher = OtpHasher::new(vec![7; 32]);
        let code = OtpCode::new("123456".into());
        let base = hasher.hash(&email("a@example.com"), OtpPurpose::VerifyEmail, &code);
        assert!(base.matches(&hasher.hash(
            &email("A@example.com"),
            OtpPurpose::VerifyEmail,
            &code
        )));
        assert_eq!(base.as_bytes().len(), 32);
        assert!(!base.matches(&hasher.hash(
            &email("b@example.com"),
            OtpPurpose::VerifyEmail,
            &code
        )));
        assert!(!base.matches(&hasher.hash(
            &email("a@example.com"),
            OtpPurpose::ResetPassword,
            &code
        )));
        assert!(!base.matches(&hasher.hash(
            &email("a@example.com"),
            OtpPurpose::VerifyEmail,
            &OtpCode::new("123457".into())
        )));
        let other_key = OtpHasher::new(vec![8; 32]);
        assert!(!base.matches(&other_key.hash(
            &email("a@example.com"),
            OtpPurpose::VerifyEmail,
            &code
        )));
    }

    #[test]
    fn hash_is_not_the_plain_code() {
        let hasher = OtpHasher::new(vec![1; 32]);
        let hash = hasher.hash(
            &email("a@example.com"),
            OtpPurpose::VerifyEmail,
            &OtpCode::new("123456".into()),
        );
        assert!(!hash.as_bytes().windows(6).any(|w| w == b"123456"));
    }
}
