//! argon2id password hashing for passcode. Hashing runs on tokio's blocking pool,
//! at most `max_concurrent` at once, with at most `max_queued` waiting behind them;
//! past that, callers get `HashError::Busy` at once, so a login flood can neither
//! starve the async workers nor grow memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{
    PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use passcode_domain::ports::{HashError, PasswordHasher};
use passcode_domain::{Password, PasswordHash};
use rand::TryRngCore;
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

/// argon2id cost and the limits on concurrent work.
#[derive(Debug, Clone)]
pub struct HashingSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once (each takes one blocking thread and `memory_kib`).
    pub max_concurrent: usize,
    /// Requests allowed to wait for a slot; more are refused with `Busy`.
    pub max_queued: usize,
}

impl Default for HashingSettings {
    /// OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 2,
            max_queued: 64,
        }
    }
}

#[derive(Clone)]
pub struct Argon2Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    permits: Semaphore,
    in_flight: AtomicUsize,
    capacity: usize,
    dummy: String,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// Counts a caller from admission until it finishes or is cancelled.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Argon2Hasher {
    /// Builds the hasher and computes the dummy hash used for unknown accounts.
    pub fn new(settings: &HashingSettings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon, random_salt()?.as_str())?;
        let max_concurrent = settings.max_concurrent.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                argon,
                permits: Semaphore::new(max_concurrent),
                in_flight: AtomicUsize::new(0),
                capacity: max_concurrent + settings.max_queued,
                dummy,
            }),
        })
    }

    /// Runs `work` on the blocking pool once admitted and given a slot.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        if inner.in_flight.fetch_add(1, Ordering::AcqRel) >= inner.capacity {
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let _admission = Admission(&inner.in_flight);
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Unexpected(e.into()))?;
        let shared = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .map_err(|e| HashError::Unexpected(e.into()))?
    }
}

fn random_salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut bytes)?;
    SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> anyhow::Result<String> {
    let salt = random_salt()?;
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.clone();
        self.run(move |inner| {
            hash_with(&inner.argon, password.expose())
                .map(PasswordHash::new)
                .map_err(HashError::Unexpected)
        })
        .await
    }

    async fn verify(
        &self,
        password: &Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, HashError> {
        let password = password.clone();
        self.run(move |inner| {
            let known = hash.is_some();
            let phc = hash
                .as_ref()
                .map_or(inner.dummy.as_str(), PasswordHash::as_str);
            let parsed = PhcHash::new(phc)
                .map_err(|e| HashError::Unexpected(anyhow::anyhow!("stored hash: {e}")))?;
            let matches = inner
                .argon
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok();
            Ok(known && matches)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> HashingSettings {
        HashingSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            max_queued: 1,
        }
    }

    fn password(s: &str) -> Password {
        Password::parse(s.into()).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify_accepts_only_the_same_password() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$"));
        assert!(!hash.as_str().contains("correct horse"));
        assert!(
            hasher
                .verify(&password("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&password("wrong horse!"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_salt() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let a = hasher.hash(&password("correct horse")).await.unwrap();
        let b = hasher.hash(&password("correct horse")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn verify_without_a_hash_is_false_even_for_the_dummy_password() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        assert!(
            !hasher
                .verify(&password("anything at all"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn verify_of_a_corrupt_stored_hash_is_an_error_not_a_panic() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let result = hasher
            .verify(
                &password("anything at all"),
                Some(PasswordHash::new("garbage".into())),
            )
            .await;
        assert!(matches!(result, Err(HashError::Unexpected(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_beyond_slots_and_queue_are_refused_at_once() {
        let settings = HashingSettings {
            memory_kib: 8 * 1024,
            iterations: 3,
            ..fast()
        };
        let hasher = Argon2Hasher::new(&settings).unwrap();
        let calls = (0..8).map(|_| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&password("correct horse")).await })
        });
        let results = futures_join(calls).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy)))
            .count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(
            ok >= 2,
            "one running and one queued must complete, got {ok}"
        );
        assert!(busy >= 1, "8 callers into 2 places: some must be refused");
        assert_eq!(ok + busy, 8);
        assert_eq!(hasher.inner.in_flight.load(Ordering::Acquire), 0);
    }

    async fn futures_join<T: Send + 'static>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles.collect::<Vec<_>>() {
            out.push(handle.await.unwrap());
        }
        out
    }
}
