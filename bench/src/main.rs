//! passcode's load benchmark. Starts the release binary on SQLite and on PostgreSQL,
//! drives each scenario with keep-alive connections, and prints req/s, p50/p99 and
//! statuses, the raw argon2id rate (each thread reusing its memory from the same
//! allocator, as passcode does; at the start, and right before and after passcode's
//! login and register, which are measured against it), mail delay and peak memory.
//! With `--compare URL` the same scenarios run against another service on the
//! tutorial's paths, and a table of ratios follows: login and register once at the
//! start; the cheap scenarios right before and right after each of passcode's (this
//! machine's speed drifts by a third within minutes, so only adjacent measurements make
//! a ratio). `bench/run.sh` builds, starts PostgreSQL and MariaDB and runs it.

mod argon;
mod load;
mod relay;
mod report;
mod scripts;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

use crate::argon::{Memory, RawArgon2, argon2_rate};
use crate::load::{Call, Outcome, Script};
use crate::report::{
    Report, Row, analyzed, cpu_budget, database_cpu_per_answer, ratios, writes_per_answer,
};
use crate::scripts::{
    Answered, NewClients, Once, Paced, Probe, RefreshChain, Register, ResendNew, ResendTo,
};
use crate::server::{Limits, MailSink, Passcode};

/// passcode's allocator (`crates/app/src/main.rs`), so that raw argon2id's memory comes
/// from where passcode's hashing threads take theirs. On this machine that is the
/// difference between 4 KiB pages (glibc's) and transparent huge pages (mimalloc's
/// arenas): about 7% of argon2id's rate, which the baseline would otherwise give away.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The password every benchmark account has (strong enough for the default policy).
pub const PASSWORD: &str = "bench Correct Horse 7 battery staple";
/// The password a reset sets (`RESET`): as strong, and not the one it replaces.
const NEW_PASSWORD: &str = "bench Reset Horse 8 battery stapler";
#[derive(Debug, Parser)]
#[command(about = "Load benchmark of passcode (and, with --compare, of another service)")]
struct Args {
    /// The passcode binary (built with `cargo build --release -p passcode-app`).
    #[arg(long, default_value = "target/release/passcode")]
    binary: PathBuf,
    /// Backends to run: sqlite, postgres, mariadb.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres,mariadb")]
    backends: Vec<String>,
    /// A PostgreSQL database passcode may fill (`bench/run.sh` starts a throwaway one).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    postgres_url: Option<String>,
    /// A MariaDB database passcode may fill (`bench/run.sh` starts a throwaway one).
    #[arg(long, env = "BENCH_MARIADB_URL")]
    mariadb_url: Option<String>,
    /// Another service on the tutorial's paths (e.g. http://127.0.0.1:8100), run first.
    #[arg(long)]
    compare: Option<String>,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds before each scenario.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Connections per scenario (the login flood uses four times as many).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Only scenarios whose name contains one of these (each trimmed; an empty one,
    /// which would name every scenario, is refused).
    #[arg(long, value_delimiter = ',', value_parser = scenario_part)]
    only: Vec<String>,
    /// How passcode's mail leaves: `smtp`, to a real SMTP server over implicit TLS with
    /// AUTH that the benchmark starts for each server, or `file`.
    #[arg(long, value_enum, default_value = "smtp")]
    mail: MailArg,
    /// The Python with aiosmtpd and trustme, for `--mail smtp` (`bench/run.sh` installs one).
    #[arg(long, env = "BENCH_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// PostgreSQL and MariaDB as if on another host: passcode reaches them through a
    /// relay that holds every chunk this many milliseconds each way (at least, and a
    /// fraction of a millisecond more). 0: directly.
    #[arg(long, default_value_t = 0)]
    db_delay_ms: u64,
    /// Right codes prepared (one registration each) for the right-code scenario, which
    /// runs only when `--only` names it. A row that uses them all before its duration
    /// ends there, and is measured over the time it ran (its footer says so).
    #[arg(long, default_value_t = 600)]
    codes: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MailArg {
    Smtp,
    File,
}

/// Whether `Bench::common` measures the cheap scenarios, and paired with what.
enum Cheap<'a> {
    /// Not here: the compared service's are measured around passcode's.
    Skip,
    PairedWith(Option<&'a Reference>),
}

/// The compared service, set up once: accounts with their refresh tokens (its
/// refresh does not rotate them) and addresses with an open code.
struct Reference {
    target: Target<'static>,
    accounts: Vec<(String, String)>,
    pending: Vec<String>,
}

const WRONG: &str = "validate-otp, wrong code, fully checked";
const BUDGET: &str = "validate-otp, answered by the guess budget";
const REFRESH: &str = "token/refresh, chained";
/// passcode only (the compared service has no budget per address): wrong codes at
/// addresses whose ceiling is full, each from a new client whose share has room.
const CEILING: &str = "validate-otp, a new client each, answered by the address's ceiling";
/// passcode only: the compared service answers an unknown address without writing.
const RESEND: &str = "resend-otp, a new unknown address each";
const LOGIN: &str = "login";
const REGISTER: &str = "register";
/// passcode only, and only when `--only` names it: each code serves once, and is a
/// registration (an argon2id hash) to prepare.
const VERIFY: &str = "validate-otp, right code, a new registration each";
/// As `VERIFY`, a verified registration's sign-in code each.
const SIGN_IN: &str = "sign-in, right code, a verified registration each";
/// As `SIGN_IN`, a verified registration's password reset code each, confirmed with a
/// new password: a code spent with an account change (a new hash, every session ended,
/// a notice queued) and committed as one.
const RESET: &str = "password-reset/confirm, right code, a verified registration each";
/// As `VERIFY`, a registration of an address already registered (not verified) each:
/// against `REGISTER`'s new addresses, what tells a taken address from a new one.
const TAKEN: &str = "register, a taken unverified address each";
/// As `TAKEN`, the address's registration verified: each request queues a notice.
const TAKEN_VERIFIED: &str = "register, a taken verified address each";
/// As `TAKEN`, the address's account deactivated (`passcode users deactivate`): each
/// request writes a decoy and mails nothing.
const TAKEN_INACTIVE: &str = "register, a taken deactivated address each";
/// As `VERIFY`, the session each verification began is ended: a refresh token's family
/// revoked.
const LOGOUT: &str = "logout, a verified registration's session each";
/// As `LOGOUT`, with `"all": true`: every session of the account ended.
const LOGOUT_ALL: &str = "logout of every session, a verified registration each";
const IDLE: &str = "health/live probe (200/s), idle";
const FLOOD: &str = "health/live probe during the login flood";
const FLOOD_LOGIN: &str = "login flood (4 × connections)";
/// Logins while a wrong-code flood takes the cores: what hashing keeps at its lower
/// priority (the probe's scenario is the other way round).
const MIXED: &str = "mixed: login during a wrong-code flood";
const MIXED_WRONG: &str = "mixed: wrong code beside those logins";
/// As `MIXED`, every login to one account, and only when `--only` names it: each
/// login's budget rows are then locked by the one before it until that one's session
/// commits, which a guess queued behind on a shared connection (PostgreSQL) waits for.
const MIXED_ONE: &str = "mixed, one account: login during a wrong-code flood";
const MIXED_ONE_WRONG: &str = "mixed, one account: wrong code beside those logins";

/// Resends during the wrong-code flood, and only when `--only` names them (a quarter as
/// many connections as the flood, each pausing 10 ms before each resend): of new
/// addresses (each a decoy, rows no guess reads), then of the very addresses guessed
/// at (each replaces the open code a guess counts its try on). Against each other,
/// what a guess waits for when a resend holds its address's rows: on PostgreSQL, with
/// every guess queued behind it on its shared connection. Needs the resend cooldown
/// off (`BENCH_ENV="APP__LIMITS__RESEND_COOLDOWN_SECONDS=0"`).
const RESENDS_NEW: &str = "mixed: resends of new addresses during a guessing flood";
const RESENDS_NEW_WRONG: &str = "mixed: wrong code beside resends of new addresses";
const RESENDS_SAME: &str = "mixed: resends of the guessed addresses during a guessing flood";
const RESENDS_SAME_WRONG: &str = "mixed: wrong code beside resends of the guessed addresses";

/// Where a scenario sends its requests, the server's process where it is known (to
/// measure its CPU time), the process of the database server it writes to where that
/// runs on this machine (the same), and the PostgreSQL server it writes to, if it
/// does (to count its writing transactions).
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    addr: SocketAddr,
    pid: Option<u32>,
    database: Option<u32>,
    postgres: Option<&'a str>,
}

struct Bench {
    args: Args,
    settings: passcode_app::Settings,
}

impl Bench {
    fn wanted(&self, scenario: &str) -> bool {
        self.args.only.is_empty() || self.named(scenario)
    }

    /// Whether `--only` names `scenario`.
    fn named(&self, scenario: &str) -> bool {
        self.args.only.iter().any(|o| scenario.contains(o.as_str()))
    }

    /// The measurement of `scripts` against `target`, to be awaited where it should run.
    fn measurement(
        &self,
        target: Target<'_>,
        scripts: Vec<Box<dyn Script>>,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        load::run(
            target.addr,
            target.pid,
            target.database,
            target.postgres.map(str::to_owned),
            scripts,
            Duration::from_secs(self.args.warmup),
            Duration::from_secs(self.args.duration),
        )
    }

    async fn measure(&self, target: Target<'_>, scripts: Vec<Box<dyn Script>>) -> Outcome {
        self.measurement(target, scripts).await
    }

    /// Measures on a thread and runtime of its own, so that the flood's connections,
    /// driven by the shared runtime, cannot delay reading the probe's answers: the
    /// figure is the server's latency, not the load generator's queue.
    async fn measure_apart(
        &self,
        target: Target<'_>,
        scripts: Vec<Box<dyn Script>>,
    ) -> anyhow::Result<Outcome> {
        let measurement = self.measurement(target, scripts);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("probe".to_owned())
            .spawn(move || {
                let _ = sender.send(runtime.block_on(measurement));
            })?;
        receiver
            .await
            .context("the probe's thread ended without an answer")
    }

    fn emails(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}-{i}@bench.example.com"))
            .collect()
    }

    /// `connections` login scripts, taking the accounts in turn.
    fn login_scripts(accounts: &[(String, String)], connections: usize) -> Vec<Box<dyn Script>> {
        (0..connections)
            .map(|i| scripts::login(&accounts[i % accounts.len()].0, PASSWORD))
            .collect()
    }

    /// The scripts of a cheap scenario (`WRONG`, `BUDGET`: wrong codes; `REFRESH`:
    /// chained refreshes), given accounts with their refresh tokens and addresses that
    /// have an open code.
    fn cheap_scripts(
        &self,
        scenario: &str,
        accounts: &[(String, String)],
        pending: &[String],
    ) -> Vec<Box<dyn Script>> {
        let n = self.args.connections;
        if scenario == REFRESH {
            (0..n)
                .map(|i| {
                    Box::new(RefreshChain {
                        token: accounts[i % accounts.len()].1.clone(),
                    }) as Box<dyn Script>
                })
                .collect()
        } else {
            (0..n)
                .map(|i| scripts::wrong_code(&pending[i % pending.len()]))
                .collect()
        }
    }

    /// Measures `ours` with the compared service's same scenario measured right before
    /// and right after it, so that their ratio comes from adjacent measurements.
    async fn paired(
        &self,
        reference: Option<&Reference>,
        scenario: &'static str,
        ours: impl Future<Output = Outcome>,
    ) -> Row {
        let Some(reference) = reference else {
            return Row::new(scenario, ours.await);
        };
        let theirs = || self.cheap_scripts(scenario, &reference.accounts, &reference.pending);
        let before = self.measure(reference.target, theirs()).await.rate();
        let outcome = ours.await;
        let after = self.measure(reference.target, theirs()).await.rate();
        Row {
            around: Some((before, after)),
            note: format!("compared service before / after: {before:.0} / {after:.0} req/s"),
            ..Row::new(scenario, outcome)
        }
    }

    /// The scenarios both services answer, given accounts with their refresh tokens
    /// (`tokens`) and addresses that have an open code (`pending`). The cheap ones
    /// (wrong code, refresh) only for passcode, paired with `reference` if given.
    async fn common(
        &self,
        target: Target<'_>,
        accounts: &[(String, String)],
        pending: &[String],
        report: &mut Report,
        answered: &Answered,
        cheap: Cheap<'_>,
    ) -> anyhow::Result<()> {
        let n = self.args.connections;
        // passcode's login and register are measured against argon2id: its last rate.
        let mut hashing = matches!(cheap, Cheap::PairedWith(_)).then_some(None);
        let hashing = &mut hashing;
        if let Cheap::PairedWith(reference) = cheap {
            for scenario in [WRONG, REFRESH] {
                if self.wanted(scenario) {
                    let scripts = self.cheap_scripts(scenario, accounts, pending);
                    let row = self
                        .paired(reference, scenario, self.measure(target, scripts))
                        .await;
                    report.rows.push(row);
                }
            }
            if self.wanted(RESEND) {
                let run = std::process::id();
                let scripts = (0..n)
                    .map(|i| {
                        Box::new(ResendNew {
                            prefix: format!("resend-{run}-{i}"),
                            next: 0,
                        }) as Box<dyn Script>
                    })
                    .collect();
                report
                    .rows
                    .push(Row::new(RESEND, self.measure(target, scripts).await));
            }
        }
        if self.wanted(LOGIN) {
            let scripts = Self::login_scripts(accounts, n);
            let row = self
                .bracketed(hashing, LOGIN, self.measure(target, scripts))
                .await?;
            report.rows.push(row);
        }
        if self.wanted(REGISTER) {
            let run = std::process::id();
            let scripts = (0..n)
                .map(|i| {
                    Box::new(Register {
                        prefix: format!("reg-{run}-{}-{i}", report.rows.len()),
                        next: 0,
                        last: String::new(),
                        answered: answered.clone(),
                    }) as Box<dyn Script>
                })
                .collect();
            let row = self
                .bracketed(hashing, REGISTER, self.measure(target, scripts))
                .await?;
            report.rows.push(row);
        }
        Ok(())
    }

    /// Measures `ours`, with the raw argon2id rate measured right before and right
    /// after it if `hashing` (passcode's login and register): this machine's speed
    /// drifts within a run, and the share of the mean of two adjacent measurements
    /// follows the drift, where one measurement at the start or after both does not.
    async fn bracketed(
        &self,
        hashing: &mut Option<Option<RawArgon2>>,
        scenario: &'static str,
        ours: impl Future<Output = Outcome>,
    ) -> anyhow::Result<Row> {
        let Some(last) = hashing else {
            return Ok(Row::new(scenario, ours.await));
        };
        // Register follows login: login's rate after is register's before.
        let before = match last {
            Some(rate) => *rate,
            None => self.hashing_rate()?,
        };
        let outcome = ours.await;
        let after = self.hashing_rate()?;
        *last = Some(after);
        Ok(Row {
            hashing_around: Some((before, after)),
            ..Row::new(scenario, outcome)
        })
    }

    fn mail_sink(&self) -> MailSink {
        match self.args.mail {
            MailArg::File => MailSink::File,
            MailArg::Smtp => MailSink::Smtp {
                python: self.args.python.clone(),
                script: PathBuf::from("tests/support/smtp_server.py"),
            },
        }
    }

    fn hashing_rate(&self) -> anyhow::Result<RawArgon2> {
        tokio::task::block_in_place(|| argon2_rate(&self.settings, Memory::Reused))
    }

    /// The tutorial's service: accounts come with tokens from registration. Measures
    /// login and register; the cheap scenarios are measured around passcode's.
    async fn compare(&self, url: &str) -> anyhow::Result<(Report, Reference)> {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse::<SocketAddr>()
            .with_context(|| format!("--compare wants http://IP:PORT, not {url}"))?;
        let run = std::process::id();
        let mut accounts = Vec::new();
        for email in Self::emails(&format!("acct-{run}"), self.args.connections) {
            let (status, body) = load::once(
                addr,
                Call::post(
                    "/api/accounts/create/",
                    json!({"email": email, "full_name": "Bench User", "password": PASSWORD}),
                ),
            )
            .await?;
            let Some(refresh) = body.pointer("/token/refresh").and_then(|v| v.as_str()) else {
                bail!("{url}: registering {email} answered {status} {body}");
            };
            accounts.push((email, refresh.to_owned()));
        }
        let pending: Vec<String> = accounts.iter().map(|(e, _)| e.clone()).collect();
        let mut report = Report {
            title: format!("compared service at {url} (its cheap scenarios: around passcode's)"),
            rows: Vec::new(),
            footer: Vec::new(),
        };
        let answered = Answered::default();
        let target = Target {
            addr,
            pid: None,
            database: None,
            postgres: None,
        };
        self.common(
            target,
            &accounts,
            &pending,
            &mut report,
            &answered,
            Cheap::Skip,
        )
        .await?;
        Ok((
            report,
            Reference {
                target,
                accounts,
                pending,
            },
        ))
    }

    async fn passcode(
        &self,
        backend: &str,
        reference: Option<&Reference>,
    ) -> anyhow::Result<Report> {
        let url = match backend {
            "sqlite" => None,
            "postgres" => Some(
                self.args
                    .postgres_url
                    .clone()
                    .context("--postgres-url (or BENCH_DATABASE_URL) is needed for postgres")?,
            ),
            "mariadb" => Some(
                self.args
                    .mariadb_url
                    .clone()
                    .context("--mariadb-url (or BENCH_MARIADB_URL) is needed for mariadb")?,
            ),
            other => bail!("unknown backend {other}"),
        };
        // The benchmark's own readings (writes per answer) go to the database directly.
        let direct = url.clone();
        let database = direct
            .as_deref()
            .and_then(local_port)
            .and_then(load::listener);
        let url = match url {
            Some(url) if self.args.db_delay_ms > 0 => {
                let delay = Duration::from_millis(self.args.db_delay_ms);
                println!(
                    "(passcode reaches {backend} through a relay that holds each chunk {} ms each way)",
                    self.args.db_delay_ms
                );
                Some(relay::delayed(&url, delay).await?)
            }
            url => url,
        };
        let dir = tempfile::tempdir()?;
        let server = Passcode::start(
            &self.args.binary,
            dir.path(),
            url.as_deref(),
            Limits::Raised,
            &self.mail_sink(),
        )
        .await?;
        let addr = server.addr;
        let run = std::process::id();
        let n = self.args.connections;
        // Accounts: registered and verified, each with its first refresh token.
        let emails = Self::emails(&format!("acct-{run}"), n);
        for email in &emails {
            server.register(email).await?;
        }
        let mut accounts = Vec::new();
        for email in &emails {
            let code = server.code_for(email).await?;
            let (status, body) = load::once(
                addr,
                Call::post(
                    "/api/accounts/validate-otp/",
                    json!({"email": email, "otp": code}),
                ),
            )
            .await?;
            let Some(refresh) = body.pointer("/token/refresh").and_then(|v| v.as_str()) else {
                bail!("verifying {email} answered {status} {body}");
            };
            accounts.push((email.clone(), refresh.to_owned()));
        }
        // Addresses with an open code, for wrong guesses.
        let pending = Self::emails(&format!("pending-{run}"), n);
        for email in &pending {
            server.register(email).await?;
        }
        let mut report = Report {
            // Figures taken with BENCH_ENV or BENCH_LAUNCHER say so in their own output.
            title: format!(
                "passcode on {backend}, mail by {}{}",
                match self.args.mail {
                    MailArg::Smtp => "SMTP (implicit TLS, AUTH)",
                    MailArg::File => "file",
                },
                experiment_note()
            ),
            rows: Vec::new(),
            footer: Vec::new(),
        };
        let answered = Answered::default();
        let target = Target {
            addr,
            pid: server.pid(),
            database,
            postgres: (backend == "postgres")
                .then_some(direct.as_deref())
                .flatten(),
        };
        self.common(
            target,
            &accounts,
            &pending,
            &mut report,
            &answered,
            Cheap::PairedWith(reference),
        )
        .await?;
        let mut smtp_per_mail = None;
        if self.wanted(REGISTER) {
            let (line, per_mail) = server.mail_delay(&answered).await?;
            report.footer.push(line);
            smtp_per_mail = per_mail;
        }
        // Login and register, each against the mean of the argon2id rates around it;
        // and a raw hash's CPU over the server's CPU per answer, which the SMTP server
        // and the load generator on the same cores do not move.
        for row in &report.rows {
            if let Some((before, after)) = row.hashing_around {
                let share = row.outcome.rate() / f64::midpoint(before.per_second, after.per_second);
                let hash_us = before
                    .cpu_us
                    .zip(after.cpu_us)
                    .map(|(b, a)| f64::midpoint(b, a));
                let cpu_share = hash_us.zip(row.outcome.server_cpu_us()).map_or(
                    String::new(),
                    |(hash_us, cpu)| {
                        // The database server's share of the same cores, where measured.
                        let with_database =
                            row.outcome.database_cpu_us().map_or(String::new(), |db| {
                                format!(
                                    ", {:.2} of it with the database server's ({db:.0} µs)",
                                    hash_us / (cpu + db)
                                )
                            });
                        format!(
                            "; a raw hash's CPU ({hash_us:.0} µs) is {:.2} of its CPU per \
                             answer{with_database}",
                            hash_us / cpu
                        )
                    },
                );
                report.footer.push(format!(
                    "{}: {share:.2} of raw argon2id (measured right before and \
                     after it: {:.1}, {:.1} hashes/s){cpu_share}",
                    row.scenario, before.per_second, after.per_second
                ));
                if row.scenario == REGISTER
                    && let Some(line) = cpu_budget(&row.outcome, hash_us, smtp_per_mail)
                {
                    report.footer.push(line);
                }
            }
        }
        if self.wanted(IDLE) || self.wanted(FLOOD) {
            let health = || vec![Box::new(Probe(Call::get("/health/live"))) as Box<dyn Script>];
            let probe = Target {
                addr,
                pid: None,
                database: None,
                postgres: None,
            };
            let mut idle = self.measure_apart(probe, health()).await?;
            let idle_p99 = idle.percentile_ms(0.99);
            report.rows.push(Row::new(IDLE, idle));
            let logins = Self::login_scripts(&accounts, 4 * n);
            let (flood, during) = tokio::join!(
                self.measure(target, logins),
                self.measure_apart(probe, health())
            );
            let mut during = during?;
            report.rows.push(Row::new(FLOOD_LOGIN, flood));
            report.footer.push(format!(
                "probe p99 during the login flood / idle: {:.2}",
                during.percentile_ms(0.99) / idle_p99
            ));
            report.rows.push(Row::new(FLOOD, during));
        }
        for (scenario, wrong_scenario) in [(MIXED, MIXED_WRONG), (MIXED_ONE, MIXED_ONE_WRONG)] {
            let one = scenario == MIXED_ONE;
            let asked = if one {
                self.named(scenario)
            } else {
                self.wanted(scenario)
            };
            if !asked {
                continue;
            }
            let logins = Self::login_scripts(if one { &accounts[..1] } else { &accounts }, n);
            let wrong = self.cheap_scripts(WRONG, &accounts, &pending);
            // Not counting writes or the database's CPU: each would count the other's too.
            let target = Target {
                database: None,
                postgres: None,
                ..target
            };
            let (logins, wrong) =
                tokio::join!(self.measure(target, logins), self.measure(target, wrong));
            // Each against its own rate alone, where this run measured it.
            let shares = [("login", LOGIN, &logins), ("wrong code", WRONG, &wrong)]
                .iter()
                .filter_map(|(name, scenario, outcome)| {
                    let alone = report.rate_of(scenario)?;
                    Some(format!("{name} {:.2}", outcome.rate() / alone))
                })
                .collect::<Vec<_>>();
            if !shares.is_empty() {
                report.footer.push(format!(
                    "login{} and wrong code at once, each over its rate alone: {}",
                    if one { " (one account)" } else { "" },
                    shares.join(", ")
                ));
            }
            report.rows.push(Row::new(scenario, logins));
            report.rows.push(Row::new(wrong_scenario, wrong));
        }
        for (scenario, wrong_scenario) in [
            (RESENDS_NEW, RESENDS_NEW_WRONG),
            (RESENDS_SAME, RESENDS_SAME_WRONG),
        ] {
            if !self.named(scenario) {
                continue;
            }
            let run = std::process::id();
            let resends = (0..n.div_ceil(4))
                .map(|i| -> Box<dyn Script> {
                    // Paced (a resend of a guessed address costs more: it mails its
                    // code), so that both rows resend at about the same rate.
                    let resend: Box<dyn Script> = if scenario == RESENDS_SAME {
                        // Each connection its own share of the addresses, in turn.
                        let emails = pending.iter().skip(i).step_by(n.div_ceil(4)).cloned();
                        Box::new(ResendTo {
                            emails: emails.collect(),
                            next: 0,
                        })
                    } else {
                        Box::new(ResendNew {
                            prefix: format!("mixed-resend-{run}-{i}"),
                            next: 0,
                        })
                    };
                    Box::new(Paced(resend, Duration::from_millis(10)))
                })
                .collect();
            let wrong = self.cheap_scripts(WRONG, &accounts, &pending);
            let target = Target {
                database: None,
                postgres: None,
                ..target
            };
            let (resends, mut wrong) =
                tokio::join!(self.measure(target, resends), self.measure(target, wrong));
            if let Some(alone) = report.rows.iter_mut().find(|row| row.scenario == WRONG) {
                report.footer.push(format!(
                    "{wrong_scenario}: {:.2} of its rate alone, p99 {:.2} ms against {:.2} \
                     alone",
                    wrong.rate() / alone.outcome.rate(),
                    wrong.percentile_ms(0.99),
                    alone.outcome.percentile_ms(0.99)
                ));
            }
            report.rows.push(Row::new(scenario, resends));
            report.rows.push(Row::new(wrong_scenario, wrong));
        }
        for scenario in [
            VERIFY,
            SIGN_IN,
            RESET,
            TAKEN,
            TAKEN_VERIFIED,
            TAKEN_INACTIVE,
            LOGOUT,
            LOGOUT_ALL,
        ] {
            if self.named(scenario) {
                let row = self
                    .right_codes(&server, target, scenario, &mut report)
                    .await?;
                report.rows.push(row);
            }
        }
        report.footer.push(server.peak_memory());
        server.stop().await;

        if self.wanted(BUDGET) || self.wanted(CEILING) {
            // The default budgets: the same wrong guesses soon meet them.
            let server = Passcode::start(
                &self.args.binary,
                dir.path(),
                url.as_deref(),
                Limits::Budgets,
                &self.mail_sink(),
            )
            .await?;
            let target = Target {
                addr: server.addr,
                pid: server.pid(),
                database,
                postgres: (backend == "postgres")
                    .then_some(direct.as_deref())
                    .flatten(),
            };
            if self.wanted(BUDGET) {
                let scripts = self.cheap_scripts(BUDGET, &accounts, &pending);
                let mut row = self
                    .paired(reference, BUDGET, self.measure(target, scripts))
                    .await;
                row.note = if row.note.is_empty() {
                    "default budgets".into()
                } else {
                    format!("default budgets; {}", row.note)
                };
                report.rows.push(row);
            }
            if self.wanted(CEILING) {
                let scripts = (0..self.args.connections)
                    .map(|i| {
                        Box::new(NewClients {
                            email: pending[i % pending.len()].clone(),
                            connection: u8::try_from(i).unwrap_or(u8::MAX),
                            next: 0,
                        }) as Box<dyn Script>
                    })
                    .collect();
                let mut row = Row::new(CEILING, self.measure(target, scripts).await);
                row.note = "default budgets".into();
                report.rows.push(row);
            }
            server.stop().await;
        }
        if let Some(line) = database_cpu_per_answer(backend, &report.rows) {
            report.footer.push(line);
        }
        if backend == "postgres" {
            report.footer.push(writes_per_answer(&report.rows));
            report.footer.push(analyzed(&report.rows));
        }
        Ok(report)
    }
}

impl Bench {
    /// `scenario` (`VERIFY`, `SIGN_IN` or `RESET`) on `--codes` new registrations: each
    /// request sends the right code of one, to validate-otp (its verification code), to
    /// sign-in (its sign-in code, asked for once the registration is verified) or to
    /// password-reset/confirm (its reset code, asked for likewise, with a new password).
    /// `TAKEN`, `TAKEN_VERIFIED` and `TAKEN_INACTIVE` register each of them again instead;
    /// `LOGOUT` and `LOGOUT_ALL` end the session each verification began.
    async fn right_codes(
        &self,
        server: &Passcode,
        target: Target<'_>,
        scenario: &'static str,
        report: &mut Report,
    ) -> anyhow::Result<Row> {
        let emails = Self::emails(
            &format!("codes-{}-{}", std::process::id(), report.rows.len()),
            self.args.codes,
        );
        let prepared = Instant::now();
        server.register_all(&emails).await?;
        if scenario == TAKEN_VERIFIED {
            let codes = server.codes_for(&emails, "verification").await?;
            server.verify_all(&codes).await?;
        }
        if scenario == TAKEN_INACTIVE {
            server.deactivate_all(&emails).await?;
        }
        let taken = [TAKEN, TAKEN_VERIFIED, TAKEN_INACTIVE];
        let calls: Vec<Call> = if taken.contains(&scenario) {
            emails
                .iter()
                .map(|email| server::registration(email))
                .collect()
        } else if [LOGOUT, LOGOUT_ALL].contains(&scenario) {
            let codes = server.codes_for(&emails, "verification").await?;
            let all = scenario == LOGOUT_ALL;
            server
                .verify_all_for_tokens(&codes)
                .await?
                .into_iter()
                .map(|refresh| {
                    let mut body = json!({"refresh": refresh});
                    if all {
                        body["all"] = json!(true);
                    }
                    Call::post("/api/accounts/logout/", body)
                })
                .collect()
        } else {
            let mut codes = server.codes_for(&emails, "verification").await?;
            let (asked, about, path) = match scenario {
                SIGN_IN => (
                    "/api/accounts/sign-in/code/",
                    "sign-in",
                    "/api/accounts/sign-in/",
                ),
                RESET => (
                    "/api/accounts/password-reset/",
                    "password reset",
                    "/api/accounts/password-reset/confirm/",
                ),
                _ => ("", "", "/api/accounts/validate-otp/"),
            };
            if !asked.is_empty() {
                server.verify_all(&codes).await?;
                server.ask_all(asked, &emails).await?;
                codes = server.codes_for(&emails, about).await?;
            }
            codes
                .iter()
                .map(|(email, code)| {
                    let mut body = json!({"email": email, "otp": code});
                    if scenario == RESET {
                        body["new_password"] = json!(NEW_PASSWORD);
                    }
                    Call::post(path, body)
                })
                .collect()
        };
        let seconds = prepared.elapsed().as_secs_f64();
        let calls = Arc::new(Mutex::new(calls));
        let scripts = (0..self.args.connections)
            .map(|_| {
                Box::new(Once::new(
                    calls.clone(),
                    Duration::from_secs(self.args.warmup),
                )) as Box<dyn Script>
            })
            .collect();
        let outcome = self.measure(target, scripts).await;
        let left = calls.lock().map_or(0, |left| left.len());
        report.footer.push(format!(
            "{scenario}: {} registrations prepared in {seconds:.0} s, {}",
            self.args.codes,
            if outcome.ran_out {
                format!(
                    "all used {:.2} s into the measured {} s: measured over those \
                     (raise --codes for a longer row)",
                    outcome.measured.as_secs_f64(),
                    self.args.duration
                )
            } else {
                format!("{left} left unused")
            }
        ));
        Ok(Row::new(scenario, outcome))
    }
}

/// One part of `--only`, trimmed; refused if empty (`--only "logout,"` would
/// otherwise run every scenario).
fn scenario_part(part: &str) -> Result<String, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("an empty scenario name would match every scenario".to_owned());
    }
    Ok(part.to_owned())
}

/// The port of a database URL whose host is this machine (`scheme://[user@]host:port/...`).
fn local_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        .then(|| port.parse().ok())
        .flatten()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = passcode_app::Settings::load(std::path::Path::new("config"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hashing = &settings.hashing;
    let raw = argon2_rate(&settings, Memory::Reused)?;
    let reused = raw.per_second;
    let per_hash = argon2_rate(&settings, Memory::PerHash)?.per_second;
    println!(
        "raw argon2id: {reused:.1} hashes/s on {} threads (m={} KiB, t={}, p={}), each \
         thread's memory reused ({} KiB of this process on huge pages); {per_hash:.1} \
         ({:.2} of that) allocating it for each hash",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        hashing.memory_kib,
        hashing.iterations,
        hashing.parallelism,
        raw.huge_kib
            .map_or_else(|| "unknown".to_owned(), |kib| kib.to_string()),
        per_hash / reused
    );
    let bench = Bench { args, settings };
    runtime.block_on(async {
        let reference = match &bench.args.compare {
            Some(url) => {
                let (mut report, reference) = bench.compare(url).await?;
                report.print();
                Some((report, reference))
            }
            None => None,
        };
        let mut reports = Vec::new();
        for backend in &bench.args.backends {
            let mut report = bench
                .passcode(backend, reference.as_ref().map(|(_, r)| r))
                .await?;
            report.print();
            reports.push(report);
        }
        if let Some((reference, _)) = &reference {
            for report in &reports {
                ratios(reference, report);
            }
        }
        Ok(())
    })
}

/// What `BENCH_ENV` and `BENCH_LAUNCHER` change for the server under test, if anything.
fn experiment_note() -> String {
    ["BENCH_ENV", "BENCH_LAUNCHER"]
        .iter()
        .filter_map(|key| {
            let value = std::env::var(key).ok()?;
            let value = value.trim();
            (!value.is_empty()).then(|| format!(" ({key}=\"{value}\")"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Args, local_port};

    #[test]
    fn only_names_trimmed_parts_and_refuses_an_empty_one() {
        let args = Args::try_parse_from(["bench", "--only", "wrong code, budget"]).unwrap();
        assert_eq!(args.only, ["wrong code", "budget"]);
        let empty = Args::try_parse_from(["bench", "--only", "logout,"]).unwrap_err();
        assert!(
            empty.to_string().contains("would match every scenario"),
            "{empty}"
        );
    }

    #[test]
    fn a_database_url_on_this_machine_gives_its_port() {
        assert_eq!(
            local_port("postgres://postgres@127.0.0.1:55432/postgres"),
            Some(55432)
        );
        assert_eq!(
            local_port("mysql://root:pw@localhost:3306/db?ssl=false"),
            Some(3306)
        );
        assert_eq!(local_port("postgres://[::1]:5433"), Some(5433));
        assert_eq!(local_port("postgres://db.example.com:5432/postgres"), None);
        assert_eq!(local_port("postgres://127.0.0.1/postgres"), None);
    }
}
