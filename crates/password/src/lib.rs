//! argon2id password hashing for passcode. Hashing runs on a dedicated pool of
//! `max_concurrent` threads, with at most `max_queued` jobs waiting; past that,
//! callers get `HashError::Busy` at once, so a login flood can neither starve the
//! async workers nor grow memory without bound. Each hashing thread takes its argon2
//! memory as it starts and reuses it for every hash: left to the allocator, glibc's
//! dynamic mmap threshold keeps every freed 19 MiB block resident and memory grows
//! with each login. Hashing memory is thus `max_concurrent × memory_kib`, held before
//! `Argon2Hasher::new` returns; no other thread hashes (the dummy hash too is computed
//! on the pool).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash as PhcHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use passcode_domain::ports::{HashError, PasswordCheck, PasswordHasher};
use passcode_domain::{Password, PasswordHash};
use rand::TryRng;
use rand::rngs::SysRng;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// argon2id cost and the limits on concurrent work.
#[derive(Debug, Clone)]
pub struct HashingSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashing threads, so hashes computed at once (each needs `memory_kib`).
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
    jobs: SyncSender<Job>,
    /// Jobs queued and not yet started (the `passcode_hashing_queue_depth` gauge).
    waiting: Arc<AtomicI64>,
}

struct Inner {
    argon: Argon2<'static>,
    dummy: String,
}

type Job = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher").finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// Builds the hasher, starts its threads, and computes the dummy hash used for
    /// unknown accounts. The threads end when the last clone is dropped.
    pub fn new(settings: &HashingSettings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let (jobs, queue) = sync_channel::<Job>(settings.max_queued);
        let queue = Arc::new(Mutex::new(queue));
        let blocks = argon.params().block_count();
        let threads = settings.max_concurrent.max(1);
        let (holding, held) = std::sync::mpsc::channel();
        for n in 0..threads {
            let queue = queue.clone();
            let holding = holding.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue, blocks, &holding))?;
        }
        drop(holding);
        // Back only once every thread holds its memory, so that a service that says it
        // is ready already has its fixed hashing memory, and what it measures idle is
        // what it keeps.
        for _ in 0..threads {
            held.recv()
                .map_err(|_| anyhow::anyhow!("a hashing thread stopped as it started"))?;
        }
        // The dummy hash on a hashing thread, so that no other thread keeps argon2
        // memory for the process's lifetime.
        let (done, dummy) = std::sync::mpsc::channel();
        let salt = random_salt()?.to_string();
        let dummy_argon = argon.clone();
        jobs.send(Box::new(move || {
            let _ = done.send(hash_with(&dummy_argon, &salt));
        }))
        .map_err(|_| anyhow::anyhow!("the hashing threads have stopped"))?;
        let dummy = dummy
            .recv()
            .map_err(|_| anyhow::anyhow!("the dummy hash was lost"))??;
        Ok(Self {
            inner: Arc::new(Inner { argon, dummy }),
            jobs,
            waiting: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Queues `work` for the hashing threads, or refuses at once if the queue is full.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let inner = self.inner.clone();
        let waiting = self.waiting.clone();
        let job: Job = Box::new(move || {
            queue_depth(waiting.fetch_sub(1, Ordering::Relaxed) - 1);
            // The caller may have gone away; then nobody needs the result.
            let _ = done.send(work(&inner));
        });
        // Counted before it is queued, so that a job starting at once never counts below zero.
        queue_depth(self.waiting.fetch_add(1, Ordering::Relaxed) + 1);
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            queue_depth(self.waiting.fetch_sub(1, Ordering::Relaxed) - 1);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("passcode_hashing_rejections_total").increment(1);
                return Err(HashError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashError::Unexpected(anyhow::anyhow!(
                    "the hashing threads have stopped"
                )));
            }
        }
        result
            .await
            .map_err(|_| HashError::Unexpected(anyhow::anyhow!("a hashing job was lost")))?
    }
}

#[allow(clippy::cast_precision_loss)] // a queue of at most a few thousand jobs
fn queue_depth(waiting: i64) {
    metrics::gauge!("passcode_hashing_queue_depth").set(waiting.max(0) as f64);
}

/// The niceness-mapped priority of hashing threads: below the request threads', so
/// that a login flood takes the cores only while nothing cheaper is waiting.
const HASHING_PRIORITY: u8 = 25;

/// A hashing thread: takes its memory for `blocks` and says so on `holding`, then
/// runs jobs until every sender is gone.
fn work(queue: &Mutex<Receiver<Job>>, blocks: usize, holding: &std::sync::mpsc::Sender<()>) {
    if let Err(error) = lower_priority() {
        // Hashing still works, only at the request threads' priority.
        tracing::warn!(%error, "could not lower the hashing threads' priority");
    }
    reserve(blocks);
    let _ = holding.send(());
    loop {
        let job = {
            let receiver = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job();
    }
}

/// Puts the calling (hashing) thread in the normal scheduling class at
/// `HASHING_PRIORITY`, whatever class it inherited. A service started under a
/// real-time policy (`chrt -f`, systemd's `CPUSchedulingPolicy=fifo`) keeps its request
/// threads there, where they preempt hashing at once; a hash at a real-time priority
/// would instead hold a core for its whole run and starve everything else.
fn lower_priority() -> Result<(), String> {
    let priority = thread_priority::ThreadPriorityValue::try_from(HASHING_PRIORITY)
        .map(thread_priority::ThreadPriority::Crossplatform)
        .map_err(|e| format!("{e:?}"))?;
    #[cfg(unix)]
    let set = thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        priority,
        thread_priority::unix::ThreadSchedulePolicy::Normal(
            thread_priority::unix::NormalThreadSchedulePolicy::Other,
        ),
    );
    #[cfg(not(unix))]
    let set = thread_priority::set_current_thread_priority(priority);
    set.map_err(|e| format!("{e:?}"))
}

fn random_salt() -> anyhow::Result<Salt> {
    let mut bytes = [0u8; 16];
    SysRng.try_fill_bytes(&mut bytes)?;
    Salt::new(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))
}

thread_local! {
    /// This thread's argon2 working memory, grown to the largest cost seen, then reused.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Grows this thread's argon2 memory to `blocks`, written so that it is resident.
fn reserve(blocks: usize) {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
    });
}

/// Runs argon2 with this thread's reusable memory.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    let blocks = params.block_count();
    reserve(blocks);
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
}

/// A new PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) for `password`.
fn hash_with(argon: &Argon2<'_>, password: &str) -> anyhow::Result<String> {
    let params = argon.params().clone();
    let salt = random_salt()?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(argon, &params, password.as_bytes(), salt.as_ref(), &mut out)?;
    let phc = PhcHash {
        algorithm: Algorithm::Argon2id.into(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string, with the stored hash's own
/// algorithm and cost (so hashes made under older settings keep working).
fn verify_with(password: &str, phc: &str) -> anyhow::Result<bool> {
    let parsed = PhcHash::new(phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let salt = parsed
        .salt
        .ok_or_else(|| anyhow::anyhow!("stored hash has no salt"))?;
    let expected = parsed
        .hash
        .ok_or_else(|| anyhow::anyhow!("stored hash has no output"))?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    compute(
        &argon,
        &params,
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
    )?;
    Ok(expected.as_bytes().ct_eq(&out).into())
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
            let matches = verify_with(password.expose(), phc).map_err(HashError::Unexpected)?;
            Ok(known && matches)
        })
        .await
    }

    /// On the hashing threads: an estimate that costs as much as a hash is bounded
    /// and queued like one, below the request threads' priority.
    async fn check(&self, check: PasswordCheck) -> Result<Option<String>, HashError> {
        self.run(move |_| Ok(check())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's niceness (field 19 of its `stat`).
    #[cfg(target_os = "linux")]
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name may hold spaces: count fields after its closing parenthesis.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_the_callers_priority() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let theirs = hasher.run(|_| Ok(niceness())).await.unwrap();
        assert!(
            theirs > niceness(),
            "hashing nice {theirs}, caller {}",
            niceness()
        );
    }

    /// Hashing threads leave whatever scheduling class they inherit for the normal
    /// one: started under a real-time policy, a service must not hash at it. The batch
    /// class stands in for a real-time one, which an unprivileged test cannot enter.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_leave_an_inherited_scheduling_class() {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id, thread_schedule_policy,
        };
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Crossplatform(0u8.try_into().unwrap()),
            batch,
        )
        .unwrap();
        assert_eq!(thread_schedule_policy().unwrap(), batch);
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let theirs = hasher
            .run(|_| Ok((thread_schedule_policy().unwrap(), niceness())))
            .await
            .unwrap();
        assert_eq!(
            theirs.0,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other)
        );
        // `HASHING_PRIORITY` is nice 9, as when the class was already the normal one.
        assert_eq!(theirs.1, 9);
    }

    /// A new password's strength estimate runs where hashes run, not on the caller's
    /// (request) thread.
    #[tokio::test]
    async fn password_checks_run_on_the_hashing_threads() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        let ran_on = hasher
            .check(Box::new(|| {
                std::thread::current().name().map(str::to_owned)
            }))
            .await
            .unwrap();
        assert_eq!(ran_on.as_deref(), Some("argon2-0"));
    }

    /// Hashing memory is the hashing threads' alone, taken as they start: the thread
    /// that builds the hasher keeps none (it computed the dummy hash until
    /// 2026-12-06, and kept its 19 MiB for the process's lifetime), and a hashing
    /// thread holds its whole memory before its first hash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_hashing_threads_hold_argon2_memory_taken_as_they_start() {
        let hasher = Argon2Hasher::new(&fast()).unwrap();
        assert_eq!(MEMORY.with(|memory| memory.borrow().len()), 0);
        let two = Argon2Hasher::new(&HashingSettings {
            max_concurrent: 2,
            max_queued: 2,
            ..fast()
        })
        .unwrap();
        // Both threads of `two` at once (each holds its job while the other takes
        // one): one computed the dummy hash, the other has not hashed.
        let held = futures_join((0..2).map(|_| {
            let two = two.clone();
            tokio::spawn(async move {
                two.run(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Ok((
                        std::thread::current().name().map(str::to_owned),
                        MEMORY.with(|memory| memory.borrow().len()),
                    ))
                })
                .await
                .unwrap()
            })
        }))
        .await;
        let blocks = hasher.inner.argon.params().block_count();
        let mut threads: Vec<_> = held.iter().map(|(name, _)| name.clone()).collect();
        threads.sort();
        assert_eq!(threads, [Some("argon2-0".into()), Some("argon2-1".into())]);
        assert!(held.iter().all(|&(_, len)| len == blocks), "{held:?}");
    }

    /// `new` returns only once every hashing thread holds its memory: a service's idle
    /// size already includes it (until 2026-12-06 only the thread that computed the
    /// dummy hash was sure to, and a memory bound measured from idle could count the
    /// other's 19 MiB as growth).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_new_hasher_already_holds_every_threads_memory() {
        let before = resident_kib();
        let hasher = Argon2Hasher::new(&HashingSettings {
            memory_kib: 16 * 1024,
            max_concurrent: 3,
            max_queued: 1,
            ..fast()
        })
        .unwrap();
        let grown = resident_kib().saturating_sub(before);
        // Three threads of 16 MiB; other tests in this process may free a few MiB.
        assert!(grown >= 40 * 1024, "grew {grown} KiB");
        drop(hasher);
    }

    /// Resident memory (VmRSS) of this process, in KiB.
    #[cfg(target_os = "linux")]
    fn resident_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

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
        assert!(ok >= 1, "admitted calls complete, got {ok}");
        assert!(busy >= 1, "8 callers into 2 places: some must be refused");
        assert_eq!(ok + busy, 8);
        // Once the burst is over, the queue has room again.
        assert!(hasher.hash(&password("correct horse")).await.is_ok());
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

#[cfg(test)]
mod compatibility {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_encoder_and_verifier() {
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let ours = hash_with(&argon, "correct horse").unwrap();
        assert!(
            argon
                .verify_password(b"correct horse", &PhcHash::new(&ours).unwrap())
                .is_ok()
        );
        let theirs = argon
            .hash_password_with_salt(b"correct horse", random_salt().unwrap().as_ref())
            .unwrap()
            .to_string();
        assert!(verify_with("correct horse", &theirs).unwrap());
        assert!(!verify_with("wrong horse", &theirs).unwrap());
    }
}
