//! The raw argon2id rate at passcode's configured parameters: what login and register
//! are measured against.

use std::time::Instant;

use crate::{PASSWORD, load};

/// The raw argon2id measurement's salt (16 bytes).
const SALT: &[u8] = b"bench-salt-16byt";

/// Raw argon2id on every core, at the configured parameters.
#[derive(Debug, Clone, Copy)]
pub struct RawArgon2 {
    /// Hashes per second: what login and register can at best reach.
    pub per_second: f64,
    /// CPU time per hash (this process's, which does nothing else meanwhile), where
    /// `/proc` tells it: unlike the rate, not lowered by the host taking the CPU.
    pub cpu_us: Option<f64>,
    /// This process's memory on transparent huge pages as the measurement ended.
    pub huge_kib: Option<u64>,
}

/// Where raw argon2id's 19 MiB (at the default cost) of working memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Allocated once a thread, as passcode's hashing threads do: the rate that login
    /// and register are measured against.
    Reused,
    /// Allocated (and zeroed) for each hash, as `Argon2::hash_password_into` does.
    PerHash,
}

/// This process's memory on transparent huge pages (`AnonHugePages`), where Linux tells.
fn huge_pages_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Measures raw argon2id for 3 s.
pub fn argon2_rate(settings: &passcode_app::Settings, memory: Memory) -> anyhow::Result<RawArgon2> {
    let hashing = &settings.hashing;
    let params = argon2::Params::new(
        hashing.memory_kib,
        hashing.iterations,
        hashing.parallelism,
        Some(32),
    )
    .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let seconds = 3.0;
    let cpu_before = load::cpu_time(std::process::id());
    let start = Instant::now();
    let all_done = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let params = params.clone();
            let all_done = all_done.clone();
            std::thread::spawn(move || {
                let blocks = params.block_count();
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut reused = match memory {
                    Memory::Reused => vec![argon2::Block::default(); blocks],
                    Memory::PerHash => Vec::new(),
                };
                let mut out = [0u8; 32];
                let mut n = 0u32;
                while start.elapsed().as_secs_f64() < seconds {
                    let hashed = match memory {
                        Memory::Reused => argon.hash_password_into_with_memory(
                            PASSWORD.as_bytes(),
                            SALT,
                            &mut out,
                            &mut reused,
                        ),
                        Memory::PerHash => {
                            argon.hash_password_into(PASSWORD.as_bytes(), SALT, &mut out)
                        }
                    };
                    if hashed.is_ok() {
                        n += 1;
                    }
                }
                // While every thread still holds its memory.
                all_done.wait();
                let huge = (thread == 0).then(huge_pages_kib).flatten();
                all_done.wait();
                (n, huge)
            })
        })
        .collect();
    let mut total = 0u32;
    let mut huge_kib = None;
    for handle in handles {
        let (n, huge) = handle.join().unwrap_or((0, None));
        total += n;
        huge_kib = huge_kib.or(huge);
    }
    let per_second = f64::from(total) / start.elapsed().as_secs_f64();
    let cpu_us = cpu_before
        .zip(load::cpu_time(std::process::id()))
        .map(|(before, after)| (after - before).as_secs_f64() * 1e6 / f64::from(total.max(1)));
    Ok(RawArgon2 {
        per_second,
        cpu_us,
        huge_kib,
    })
}
