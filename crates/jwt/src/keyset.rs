//! Signing keys of any supported algorithm (EdDSA, ES256, RS256), each named by its
//! RFC 7638 thumbprint (`kid`), and a key set: one key signs, every key verifies, so
//! keys can be rotated without signing anyone out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rand::rngs::SysRng;
use rsa::Generate as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::keys::Ed25519Key;

/// A key with everything needed to sign, verify and publish it.
pub struct Key {
    pub(crate) kid: String,
    pub(crate) algorithm: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// An EdDSA key, expanded once: `jsonwebtoken::encode` re-reads the key from its
    /// DER on every call, deriving its public half again (a second scalar
    /// multiplication per signature). See `JwtIssuer::sign`.
    pub(crate) ed25519: Option<ed25519_dalek::SigningKey>,
    pub(crate) public_jwk: serde_json::Value,
    pem: SecretString,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638: SHA-256 of the required members, in lexicographic order, no spaces.
fn thumbprint(canonical: &str) -> String {
    b64(&Sha256::digest(canonical.as_bytes()))
}

impl Key {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The private key in PKCS#8 PEM, to store.
    pub fn pem(&self) -> &str {
        self.pem.expose_secret()
    }

    /// A new key: `EdDSA` (Ed25519), `ES256` (P-256) or `RS256` (RSA 2048).
    pub fn generate(algorithm: Algorithm) -> anyhow::Result<Self> {
        let pem = match algorithm {
            Algorithm::EdDSA => Ed25519Key::generate()?.to_pem(),
            Algorithm::ES256 => p256::ecdsa::SigningKey::try_generate()
                .context("operating system RNG")?
                .to_pkcs8_pem(LineEnding::LF)?
                .to_string(),
            Algorithm::RS256 => rsa::PrivateKey::new(&mut SysRng, 2048)?
                .to_pkcs8_pem(LineEnding::LF)?
                .to_string(),
            other => anyhow::bail!("{other:?} keys are not supported; use EdDSA, ES256 or RS256"),
        };
        Self::from_pem(&pem)
    }

    /// Reads a PKCS#8 PEM private key of any supported kind.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        if let Ok(key) = Ed25519Key::from_pem(pem) {
            let x = b64(&key.public);
            return Ok(Self {
                kid: key.kid.clone(),
                algorithm: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_der(&key.pkcs8_der()),
                decoding: DecodingKey::from_ed_components(&x)?,
                ed25519: Some(ed25519_dalek::SigningKey::from_bytes(
                    &<[u8; 32]>::try_from(key.seed.expose_secret())
                        .context("an Ed25519 seed is 32 bytes")?,
                )),
                public_jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                pem: SecretString::from(pem.to_owned()),
            });
        }
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            let point = key.verifying_key().to_sec1_point(false);
            let (x, y) = (
                b64(point.x().context("P-256 point")?),
                b64(point.y().context("P-256 point")?),
            );
            let der = key.to_pkcs8_der()?;
            return Ok(Self {
                kid: thumbprint(&format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
                )),
                algorithm: Algorithm::ES256,
                encoding: EncodingKey::from_ec_der(der.as_bytes()),
                decoding: DecodingKey::from_ec_components(&x, &y)?,
                ed25519: None,
                public_jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                pem: SecretString::from(pem.to_owned()),
            });
        }
        if let Ok(key) = rsa::PrivateKey::from_pkcs8_pem(pem) {
            // JWK integers are big-endian without leading zeros (RFC 7518, 6.3.1).
            let (n, e) = (
                b64(&key.n().to_be_bytes_trimmed_vartime()),
                b64(&key.e().to_be_bytes_trimmed_vartime()),
            );
            let der = key.to_pkcs1_der()?;
            return Ok(Self {
                kid: thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)),
                algorithm: Algorithm::RS256,
                encoding: EncodingKey::from_rsa_der(der.as_bytes()),
                decoding: DecodingKey::from_rsa_components(&n, &e)?,
                ed25519: None,
                public_jwk: serde_json::json!({"kty": "RSA", "n": n, "e": e}),
                pem: SecretString::from(pem.to_owned()),
            });
        }
        anyhow::bail!("not a PKCS#8 private key of a supported kind (Ed25519, P-256, RSA)")
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = self.public_jwk.clone();
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = format!("{:?}", self.algorithm).into();
        jwk["use"] = "sig".into();
        jwk
    }
}

/// The keys tokens are checked with, and the one they are signed with.
#[derive(Debug)]
pub struct KeySet {
    pub(crate) keys: BTreeMap<String, Key>,
    pub(crate) signer: String,
}

impl KeySet {
    pub fn single(key: Key) -> Self {
        let signer = key.kid.clone();
        Self {
            keys: BTreeMap::from([(signer.clone(), key)]),
            signer,
        }
    }

    /// Every `*.pem` in `dir`, plus `extra` keys; the signer is the key named in
    /// `dir/active`, else `default_signer`.
    pub fn load(
        dir: &Path,
        extra: Vec<Key>,
        default_signer: Option<String>,
    ) -> anyhow::Result<Self> {
        let mut keys: BTreeMap<String, Key> =
            extra.into_iter().map(|k| (k.kid.clone(), k)).collect();
        for path in pem_files(dir)? {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = Key::from_pem(&pem).with_context(|| format!("loading {}", path.display()))?;
            keys.insert(key.kid.clone(), key);
        }
        let active = std::fs::read_to_string(dir.join("active"))
            .ok()
            .map(|s| s.trim().to_owned());
        let signer = active
            .or(default_signer)
            .ok_or_else(|| anyhow::anyhow!("no signing key: run `passcode keys rotate`"))?;
        anyhow::ensure!(
            keys.contains_key(&signer),
            "the active key {signer} is not in {}",
            dir.display()
        );
        Ok(Self { keys, signer })
    }

    pub fn signer(&self) -> &Key {
        &self.keys[&self.signer]
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.values()
    }
}

fn pem_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Writes `key` into `dir` as `<kid>.pem` (mode 0600). Returns its path. Crash-safe:
/// written and flushed aside, then linked into place, so a kill never leaves a
/// partial key file that would stop the next start.
pub fn store_key(dir: &Path, key: &Key) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.pem", key.kid));
    let mut staged = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    staged.write_all(key.pem().as_bytes())?;
    staged.as_file().sync_all()?;
    staged
        .persist_noclobber(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

/// Makes `kid` the signing key of `dir` (atomically: written aside, then renamed).
pub fn activate(dir: &Path, kid: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut staged = tempfile::NamedTempFile::new_in(dir)?;
    staged.write_all(format!("{kid}\n").as_bytes())?;
    staged.as_file().sync_all()?;
    staged.persist(dir.join("active")).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_algorithm_round_trips_through_pem() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = Key::generate(algorithm).unwrap();
            let again = Key::from_pem(key.pem()).unwrap();
            assert_eq!(again.kid, key.kid, "{algorithm:?}");
            assert_eq!(again.algorithm, algorithm);
            assert_eq!(key.jwk()["alg"], format!("{algorithm:?}"));
        }
    }

    #[test]
    fn unsupported_algorithms_and_garbage_are_refused() {
        assert!(Key::generate(Algorithm::HS256).is_err());
        assert!(
            Key::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn a_key_set_signs_with_the_active_key_and_knows_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (
            Key::generate(Algorithm::EdDSA).unwrap(),
            Key::generate(Algorithm::ES256).unwrap(),
        );
        let (old_kid, new_kid) = (old.kid.clone(), new.kid.clone());
        store_key(dir.path(), &old).unwrap();
        store_key(dir.path(), &new).unwrap();
        activate(dir.path(), &old_kid).unwrap();
        let set = KeySet::load(dir.path(), vec![], None).unwrap();
        assert_eq!(set.signer().kid, old_kid);
        assert_eq!(set.keys().count(), 2);
        activate(dir.path(), &new_kid).unwrap();
        assert_eq!(
            KeySet::load(dir.path(), vec![], None).unwrap().signer().kid,
            new_kid
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(format!("{old_kid}.pem")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
