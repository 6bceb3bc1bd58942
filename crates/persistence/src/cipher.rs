//! Mail bodies at rest: a queued message may hold a live code, so its body is sealed
//! with XChaCha20-Poly1305 under a key derived (HKDF-SHA-256) from the server's code
//! secret. The row's id and recipient are the associated data: a body cannot be moved
//! to another row or address.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use passcode_domain::InfraError;

/// Marks a sealed body; a body without it was written before bodies were sealed.
const PREFIX: &str = "v1.";

/// The key that seals mail bodies. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MailKey([u8; 32]);

impl std::fmt::Debug for MailKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailKey([REDACTED])")
    }
}

impl MailKey {
    /// Derives the mail key from the server secret (the codes' HMAC key), so that every
    /// instance sharing that secret can read every queued message.
    pub fn derive(server_secret: &[u8]) -> Self {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"passcode"), server_secret);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's limit: this cannot fail.
        let _ = hkdf.expand(b"outbox mail body v1", &mut key);
        Self(key)
    }

    /// A random key: for a store no other instance reads (tests, tools).
    pub fn random() -> Self {
        // From the OS RNG, which does not fail on the platforms passcode runs on.
        Self(Key::generate().into())
    }

    pub(crate) fn seal(
        &self,
        plaintext: &str,
        id: &str,
        recipient: &str,
    ) -> Result<String, InfraError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XNonce::try_generate().map_err(|e| {
            InfraError::Unexpected(anyhow::anyhow!("no random nonce for a mail body: {e}"))
        })?;
        let aad = associated(id, recipient);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| InfraError::Unexpected(anyhow::anyhow!("sealing a mail body failed")))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The body, or `None` if it was sealed under another key or damaged.
    pub(crate) fn open(&self, stored: &str, id: &str, recipient: &str) -> Option<String> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            // Written before bodies were sealed (a JSON object).
            return stored.starts_with('{').then(|| stored.to_owned());
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let aad = associated(id, recipient);
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

fn associated(id: &str, recipient: &str) -> Vec<u8> {
    format!("{}:{id}:{recipient}", id.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_their_key_row_and_recipient() {
        let key = MailKey::derive(b"a server secret of enough length....");
        let sealed = key
            .seal("{\"code\":\"123456\"}", "id-1", "a@example.com")
            .unwrap();
        assert!(!sealed.contains("123456"));
        assert_eq!(
            key.open(&sealed, "id-1", "a@example.com").as_deref(),
            Some("{\"code\":\"123456\"}")
        );
        assert_eq!(key.open(&sealed, "id-2", "a@example.com"), None);
        assert_eq!(key.open(&sealed, "id-1", "b@example.com"), None);
        assert_eq!(
            MailKey::random().open(&sealed, "id-1", "a@example.com"),
            None
        );
        // The same secret derives the same key, so every instance reads every message.
        let again = MailKey::derive(b"a server secret of enough length....");
        assert!(again.open(&sealed, "id-1", "a@example.com").is_some());
    }
}
