//! Signing keys: an Ed25519 key in PKCS#8 v1 PEM form (what
//! `openssl genpkey -algorithm ed25519` writes).

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use rand::TryRng;
use rand::rngs::SysRng;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Where the signing key comes from.
#[derive(Debug)]
pub enum SigningKeySource {
    /// Asymmetric keys (EdDSA, ES256, RS256): one signs, all verify.
    KeySet(crate::KeySet),
    /// HS256 with a shared secret (at least 32 bytes).
    Hs256(SecretString),
}

/// An Ed25519 key pair and its key id (the RFC 7638 thumbprint): generates and reads
/// the PEM of a key set's EdDSA keys.
#[derive(Clone)]
pub(crate) struct Ed25519Key {
    pub(crate) seed: SecretSlice<u8>,
    pub(crate) public: [u8; 32],
    pub(crate) kid: String,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Ed25519Key {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638: members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self {
            seed: SecretSlice::from(seed.to_vec()),
            public,
            kid,
        }
    }

    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        SysRng
            .try_fill_bytes(&mut seed)
            .context("operating system RNG")?;
        Ok(Self::from_seed(seed))
    }

    pub(crate) fn pkcs8_der(&self) -> Vec<u8> {
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(self.seed.expose_secret());
        der
    }

    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(self.pkcs8_der());
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----") && !line.is_empty())
            .collect();
        let der = STANDARD.decode(body).context("the key file is not PEM")?;
        anyhow::ensure!(
            der.len() == 48 && der[..16] == PKCS8_V1_PREFIX,
            "the key file is not a PKCS#8 v1 Ed25519 private key (make one with `openssl genpkey -algorithm ed25519`)"
        );
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&der[16..]);
        Ok(Self::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let key = Ed25519Key::generate().unwrap();
        let back = Ed25519Key::from_pem(&key.to_pem()).unwrap();
        assert_eq!(back.public, key.public);
        assert_eq!(back.kid, key.kid);
    }

    #[test]
    fn reads_an_openssl_generated_key() {
        // `openssl genpkey -algorithm ed25519`, and the public key `openssl pkey -pubout` gives for it.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPzMpZW3m5lebwrprQ4v+VNEouXjmWh0hT7RxHMe2Fhl\n-----END PRIVATE KEY-----\n";
        let key = Ed25519Key::from_pem(pem).unwrap();
        assert_eq!(
            STANDARD.encode(key.public),
            "5HJh5XlUMOSXKmOHQx06Vc++Jv1fQWeVHzOlmApCwX4="
        );
    }

    #[test]
    fn refuses_a_key_of_another_kind() {
        assert!(
            Ed25519Key::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert!(Ed25519Key::from_pem("not pem at all").is_err());
    }
}
