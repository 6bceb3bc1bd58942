//! The benchmark's report: its rows, the lines under them, and the ratios against the
//! compared service.

use crate::argon::RawArgon2;
use crate::load::Outcome;
use crate::{BUDGET, LOGIN, REFRESH, REGISTER, WRONG};

/// One row of a report.
pub struct Row {
    pub scenario: &'static str,
    pub outcome: Outcome,
    pub note: String,
    /// The compared service's rate on the same scenario, measured right before and
    /// right after this row (see `Bench::paired`).
    pub around: Option<(f64, f64)>,
    /// For passcode's login and register: raw argon2id measured right before and
    /// right after this row (see `Bench::bracketed`).
    pub hashing_around: Option<(RawArgon2, RawArgon2)>,
}

impl Row {
    pub fn new(scenario: &'static str, outcome: Outcome) -> Self {
        Self {
            scenario,
            outcome,
            note: String::new(),
            around: None,
            hashing_around: None,
        }
    }
}

pub struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    pub footer: Vec<String>,
}

impl Report {
    pub fn print(&mut self) {
        println!("\n== {}", self.title);
        println!(
            "{:<44} {:>9} {:>8} {:>8} {:>10}  statuses",
            "scenario", "req/s", "p50 ms", "p99 ms", "CPU µs/req"
        );
        for row in &mut self.rows {
            let rate = row.outcome.rate();
            let p50 = row.outcome.percentile_ms(0.50);
            let p99 = row.outcome.percentile_ms(0.99);
            let cpu = row
                .outcome
                .server_cpu_us()
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
            println!(
                "{:<44} {:>9.1} {:>8.2} {:>8.2} {:>10}  {}{}{}",
                row.scenario,
                rate,
                p50,
                p99,
                cpu,
                row.outcome.statuses_text(),
                if row.note.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", row.note)
                },
                // Above a percent: the host slowed this machine, and this row with it.
                match row.outcome.steal {
                    Some(share) if share >= 0.01 => {
                        format!("  [host took {:.0}% of the CPU time]", share * 100.0)
                    }
                    _ => String::new(),
                }
            );
        }
        for line in &self.footer {
            println!("{line}");
        }
    }

    pub fn rate_of(&self, scenario: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario)
            .map(|r| r.outcome.rate())
    }
}

/// The database server's CPU time per answer in each row that measured it: what the
/// database adds to each answer on the same cores (the login and register ratios
/// count it; a production database has cores of its own).
pub fn database_cpu_per_answer(backend: &str, rows: &[Row]) -> Option<String> {
    let measured: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            Some(format!(
                "{} {:.0}",
                row.scenario,
                row.outcome.database_cpu_us()?
            ))
        })
        .collect();
    (!measured.is_empty()).then(|| {
        format!(
            "the {backend} server's CPU per answer, µs (its processes on this machine): {}",
            measured.join(", ")
        )
    })
}

/// PostgreSQL's writing transactions per answer in each row that counted them: the
/// requests' commits, and whatever the server wrote besides (its mail worker's).
#[allow(clippy::cast_precision_loss)]
pub fn writes_per_answer(rows: &[Row]) -> String {
    let counted: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let writes = row.outcome.writes?;
            let answers = row.outcome.requests().max(1);
            Some(format!(
                "{} {:.2}",
                row.scenario,
                writes as f64 / answers as f64
            ))
        })
        .collect();
    if counted.is_empty() {
        return "writing transactions per answer: not counted (`psql` did not answer)".into();
    }
    format!(
        "writing transactions per answer (txid_current() around each row; with the mail \
         worker's): {}",
        counted.join(", ")
    )
}

/// Where the machine's CPU went per answer of a hashing row (register): what all its
/// cores could give each answer at the row's rate, and how much of it passcode (a raw
/// hash's share apart), the SMTP server and the database server took. The rest is the
/// load generator, the kernel's own work and idle time. The SMTP server's CPU is its
/// average per mail over its life, nearly all of it in this row.
pub fn cpu_budget(outcome: &Outcome, hash_us: Option<f64>, smtp_us: Option<f64>) -> Option<String> {
    #[allow(clippy::cast_precision_loss)]
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    let rate = outcome.rate();
    if rate <= 0.0 {
        return None;
    }
    let ms = |us: f64| us / 1000.0;
    let available = cores * 1e6 / rate;
    let server = outcome.server_cpu_us()?;
    let mut parts = vec![format!(
        "passcode {:.1}{}",
        ms(server),
        hash_us.map_or(String::new(), |hash| format!(
            " (a raw hash {:.1})",
            ms(hash)
        ))
    )];
    let mut used = server;
    if let Some(smtp) = smtp_us {
        parts.push(format!("the SMTP server {:.1}", ms(smtp)));
        used += smtp;
    }
    if let Some(database) = outcome.database_cpu_us() {
        parts.push(format!("the database server {:.1}", ms(database)));
        used += database;
    }
    Some(format!(
        "register, CPU per answer in ms: {:.1} on {cores} cores at its rate; {}; the rest \
         {:.1} (the load generator, the kernel, idle)",
        ms(available),
        parts.join(", "),
        ms(available - used)
    ))
}

/// Whether each row's warm-up brought PostgreSQL's statistics up to date.
pub fn analyzed(rows: &[Row]) -> String {
    let missed: Vec<&str> = rows
        .iter()
        .filter(|row| row.outcome.writes.is_some() && !row.outcome.analyzed)
        .map(|row| row.scenario)
        .collect();
    if missed.is_empty() {
        "statistics: ANALYZE halfway through the warm-up of each row whose writes are counted"
            .into()
    } else {
        format!(
            "statistics: ANALYZE did not answer in {} (plans may date from emptier tables)",
            missed.join(", ")
        )
    }
}

/// passcode's rate over the compared service's: for the cheap scenarios, over the mean
/// of the compared service's rates right before and right after; for login and
/// register, over its rate at the start.
pub fn ratios(reference: &Report, ours: &Report) {
    println!("\n== ratios: {} / {}", ours.title, reference.title);
    for scenario in [WRONG, BUDGET, REFRESH, LOGIN, REGISTER] {
        let Some(row) = ours.rows.iter().find(|r| r.scenario == scenario) else {
            continue;
        };
        let theirs = match row.around {
            Some((before, after)) => Some(f64::midpoint(before, after)),
            None => reference.rate_of(scenario),
        };
        if let Some(theirs) = theirs {
            println!("{scenario:<44} {:>7.2}", row.outcome.rate() / theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_budget;
    use crate::load::Outcome;
    use std::time::Duration;

    /// 1,000 answers in 10 s, each costing passcode 15 ms and the database 1.5 ms;
    /// the SMTP server 1 ms a mail.
    #[test]
    fn a_registration_s_cpu_is_shared_out_and_the_rest_is_what_is_left() {
        let outcome = Outcome {
            latencies_us: vec![1; 1_000],
            measured: Duration::from_secs(10),
            server_cpu: Some(Duration::from_secs(15)),
            database_cpu: Some(Duration::from_millis(1_500)),
            ..Outcome::default()
        };
        let cores = std::thread::available_parallelism().unwrap().get();
        #[allow(clippy::cast_precision_loss)]
        let available = cores as f64 * 10.0;
        let line = cpu_budget(&outcome, Some(13_000.0), Some(1_000.0)).unwrap();
        assert_eq!(
            line,
            format!(
                "register, CPU per answer in ms: {available:.1} on {cores} cores at its rate; \
                 passcode 15.0 (a raw hash 13.0), the SMTP server 1.0, the database server \
                 1.5; the rest {:.1} (the load generator, the kernel, idle)",
                available - 17.5
            )
        );
        let without = cpu_budget(&outcome, None, None).unwrap();
        assert!(without.contains("; passcode 15.0, the database server 1.5; the rest"));
        assert!(
            cpu_budget(&Outcome::default(), None, None).is_none(),
            "no answers"
        );
    }
}
