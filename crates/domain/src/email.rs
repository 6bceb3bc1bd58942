//! A parsed, normalised email address: trimmed, lower-cased, IDN domain in ASCII form.

use std::fmt;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("This field may not be blank.")]
    Empty,
    #[error("Enter a valid email address.")]
    Invalid,
}

/// An email address in its stored form. Two spellings of one address compare equal
/// only after parsing, so every lookup goes through [`EmailAddress::parse`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

const MAX_LEN: usize = 254;
const MAX_LOCAL: usize = 64;

impl EmailAddress {
    /// Trims, lower-cases and checks the address; an internationalised domain is
    /// converted to its ASCII (punycode) form. Quoted local parts, non-ASCII local
    /// parts, control characters and single-label domains are refused.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_LEN * 4 {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Invalid)?;
        if !valid_local(local) {
            return Err(EmailError::Invalid);
        }
        let domain = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::Invalid)?;
        if !valid_domain(&domain) {
            return Err(EmailError::Invalid);
        }
        let address = format!("{}@{}", local.to_ascii_lowercase(), domain);
        if address.len() > MAX_LEN {
            return Err(EmailError::Invalid);
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an address read back from storage, where it was stored normalised.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-.".contains(&b))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_lowercases() {
        let email = EmailAddress::parse("  Ada.Lovelace@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn parse_converts_idn_domain_to_ascii() {
        let email = EmailAddress::parse("user@Bücher.example").unwrap();
        assert_eq!(email.as_str(), "user@xn--bcher-kva.example");
    }

    #[test]
    fn parse_refuses_malformed_addresses() {
        for bad in [
            "plain",
            "@example.com",
            "user@",
            "user@localhost",
            "user@exa mple.com",
            "us er@example.com",
            "user\0@example.com",
            "user@exam\0ple.com",
            "\"quoted\"@example.com",
            "ünïcode@example.com",
            ".user@example.com",
            "a..b@example.com",
            "user@-bad.example",
            "user@127.0.0.1",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(EmailError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_blank() {
        assert_eq!(EmailAddress::parse("   "), Err(EmailError::Empty));
    }

    #[test]
    fn parse_refuses_overlong_address() {
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::Invalid));
        let long_domain = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        assert_eq!(EmailAddress::parse(&long_domain), Err(EmailError::Invalid));
    }
}
