//! The load generator: a fixed number of keep-alive HTTP/1.1 connections, each sending
//! its next request as soon as the previous answer is read (closed loop, as wrk does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    /// An `X-Forwarded-For` header: the client, as a trusted proxy would name it.
    pub forwarded_for: Option<String>,
}

impl Call {
    pub fn post(path: &str, body: serde_json::Value) -> Self {
        Self {
            method: "POST",
            path: path.to_owned(),
            body: Some(body.to_string()),
            forwarded_for: None,
        }
    }

    pub fn get(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            body: None,
            forwarded_for: None,
        }
    }
}

/// What a connection sends next, given the answer to what it sent last: the state a
/// scenario keeps per connection (a refresh chain keeps its latest token).
pub trait Script: Send + 'static {
    /// `None`: nothing is left to send, and the connection ends.
    fn next(&mut self) -> Option<Call>;
    /// How long to wait before each request (a probe, not a load).
    fn pause(&self) -> Option<Duration> {
        None
    }
    /// Sees every answer; `at` is when it was read.
    fn answered(&mut self, _status: u16, _body: &[u8], _at: SystemTime) {}
}

/// Answers counted in the measured interval.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Latency of each answer, in microseconds.
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol errors (the connection is opened again).
    pub errors: u64,
    pub measured: Duration,
    /// Whether every connection ran out of requests before the interval's end: then
    /// `measured` ends at the last answer, not at the interval's end.
    pub ran_out: bool,
    /// CPU time the server process spent (user and system, all threads) over the
    /// measured interval, where its process is known.
    pub server_cpu: Option<Duration>,
    /// The share of this machine's CPU time its host took for others over the measured
    /// interval (`steal` in `/proc/stat`), where it can be read: a slowed machine.
    pub steal: Option<f64>,
    /// CPU time the database server on this machine spent over the measured interval
    /// (its process and its children: PostgreSQL's backends), where it is known.
    pub database_cpu: Option<Duration>,
    /// Writing transactions on the server's PostgreSQL over the measured interval,
    /// where it is PostgreSQL and `psql` can ask it (see [`transaction_ids`]).
    pub writes: Option<u64>,
    /// Whether PostgreSQL's statistics were brought up to date during the warm-up
    /// (`ANALYZE`), where the server writes to PostgreSQL.
    pub analyzed: bool,
}

impl Outcome {
    pub fn requests(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn rate(&self) -> f64 {
        self.requests() as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// The latency below which `q` (0..1) of the answers fell, in milliseconds.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn percentile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let rank = ((self.latencies_us.len() as f64) * q).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    /// The server's CPU time per answer, in microseconds: less noisy than req/s on a
    /// shared machine, for changes that save CPU.
    pub fn server_cpu_us(&self) -> Option<f64> {
        self.per_answer_us(self.server_cpu?)
    }

    /// The database server's CPU time per answer, in microseconds.
    pub fn database_cpu_us(&self) -> Option<f64> {
        self.per_answer_us(self.database_cpu?)
    }

    #[allow(clippy::cast_precision_loss)]
    fn per_answer_us(&self, cpu: Duration) -> Option<f64> {
        (self.requests() > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests() as f64)
    }

    pub fn statuses_text(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("errors×{}", self.errors));
        }
        parts.join(" ")
    }

    fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors += other.errors;
    }
}

/// This machine's CPU time so far, in clock ticks: (stolen by its host, all).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    Some((*ticks.get(7)?, ticks.iter().sum()))
}

/// A process's CPU time so far (user and system, all its threads), from
/// `/proc/PID/stat`; `None` where that cannot be read (not Linux, or it is gone).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = ProcStat::read(pid)?;
    Some(ticks(stat.user + stat.system))
}

/// Clock ticks (USER_HZ, 100 per second on Linux) as a duration.
fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

/// The fields of `/proc/PID/stat` the benchmark reads.
struct ProcStat {
    parent: u32,
    user: u64,
    system: u64,
    /// User and system time of its children that ended and were waited for.
    children: u64,
}

impl ProcStat {
    fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold
        // spaces: state, ppid, ..., then utime, stime, cutime and cstime (the 14th to
        // 17th fields of the line).
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some(Self {
            parent: u32::try_from(number(1)?).ok()?,
            user: number(11)?,
            system: number(12)?,
            children: number(13)? + number(14)?,
        })
    }
}

/// The process listening on TCP `port` on this machine (from `/proc/net/tcp*` and
/// each process's open sockets), where `/proc` tells it: a database server's
/// postmaster or `mariadbd`.
pub fn listener(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields.get(1)?.rsplit(':').next()?;
                (u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == "0A")
                    .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                    .flatten()
            })
        })?;
    processes().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == inode.as_str())
            })
        })
    })
}

fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The CPU time so far of process `root` and its children, living or ended (a
/// PostgreSQL server's postmaster and its backends).
pub fn tree_cpu_time(root: u32) -> Option<Duration> {
    let stat = ProcStat::read(root)?;
    let children: u64 = processes()
        .filter_map(ProcStat::read)
        .filter(|child| child.parent == root)
        .map(|child| child.user + child.system)
        .sum();
    Some(ticks(stat.user + stat.system + stat.children + children))
}

/// Runs `scripts.len()` connections against `addr` for `warmup + duration`; answers
/// during the warm-up are not counted. With `server` (its process id), the server's
/// CPU time over the measured interval is recorded too, and with `database` (its
/// database server's process id) the database server's.
pub async fn run(
    addr: SocketAddr,
    server: Option<u32>,
    database: Option<u32>,
    postgres: Option<String>,
    scripts: Vec<Box<dyn Script>>,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + duration;
    // Set once every connection ran out of requests before `until`: the figures over
    // the interval are read then.
    let (ran_out, end) = tokio::sync::watch::channel(false);
    let end_of = move |mut end: tokio::sync::watch::Receiver<bool>| async move {
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            _ = end.wait_for(|ended| *ended) => {}
        }
    };
    // A process's CPU time over the measured interval, as `read` gives it.
    let cpu_over_interval = |pid: u32, read: fn(u32) -> Option<Duration>| {
        let ended = end_of(end.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = read(pid)?;
            ended.await;
            read(pid)?.checked_sub(before)
        })
    };
    let cpu = server.map(|pid| cpu_over_interval(pid, cpu_time));
    let database_cpu = database.map(|pid| cpu_over_interval(pid, tree_cpu_time));
    let ended = end_of(end.clone());
    let steal = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let (stolen, all) = machine_ticks()?;
        ended.await;
        let (stolen_after, all_after) = machine_ticks()?;
        #[allow(clippy::cast_precision_loss)]
        let share =
            stolen_after.checked_sub(stolen)? as f64 / all_after.checked_sub(all)?.max(1) as f64;
        Some(share)
    });
    // Halfway through the warm-up, PostgreSQL's statistics are brought up to date, as
    // autovacuum keeps them on a database in use (pgbench vacuums before it runs for
    // the same reason). Without it, a statement prepared while a table was nearly
    // empty keeps its plan (a sequential scan) while the row fills the table: on a
    // database analyzed while it held a few codes, a lookup of resend-otp's codes cost
    // 0.5 ms by the row's end.
    let analyzed = postgres.clone().map(|url| {
        tokio::spawn(async move {
            tokio::time::sleep_until((start + warmup / 2).into()).await;
            analyze(&url).await
        })
    });
    let writes = postgres.map(|url| {
        let ended = end_of(end.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = transaction_ids(&url).await?;
            ended.await;
            // The second question takes an id of its own.
            transaction_ids(&url).await?.checked_sub(before + 1)
        })
    });
    let host: Arc<str> = Arc::from(addr.to_string());
    let tasks: Vec<_> = scripts
        .into_iter()
        .map(|script| {
            let host = host.clone();
            tokio::spawn(connection(addr, host, script, measure_from, until))
        })
        .collect();
    let mut total = Outcome {
        measured: duration,
        ..Outcome::default()
    };
    let mut ended = Some(measure_from);
    for task in tasks {
        if let Ok((outcome, ran_out)) = task.await {
            total.merge(outcome);
            ended = ended.zip(ran_out).map(|(a, b)| a.max(b));
        }
    }
    // Once every connection ran out, the rest of the interval is idle: the rate is
    // over the time they ran (a prepared row's right codes), not diluted by the rest.
    if let Some(ended) = ended.filter(|ended| *ended < until) {
        total.measured = ended.saturating_duration_since(measure_from);
        total.ran_out = true;
        let _ = ran_out.send(true);
    }
    if let Some(cpu) = cpu {
        total.server_cpu = cpu.await.ok().flatten();
    }
    if let Some(cpu) = database_cpu {
        total.database_cpu = cpu.await.ok().flatten();
    }
    total.steal = steal.await.ok().flatten();
    if let Some(writes) = writes {
        total.writes = writes.await.ok().flatten();
    }
    if let Some(analyzed) = analyzed {
        total.analyzed = analyzed.await.unwrap_or(false);
    }
    total
}

/// `ANALYZE` on the PostgreSQL database at `url`: whether it answered.
async fn analyze(url: &str) -> bool {
    tokio::process::Command::new("psql")
        .args([url, "-Atqc", "ANALYZE"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .is_ok_and(|out| out.status.success())
}

/// The next transaction id of the PostgreSQL server at `url` (`txid_current()`, which
/// takes one). Only a transaction that writes takes an id, so the difference between
/// two answers, less one, counts the writing transactions between them, and only
/// those: reads and `pg_stat_database`'s delay do not enter it.
async fn transaction_ids(url: &str) -> Option<u64> {
    let out = tokio::process::Command::new("psql")
        .args([url, "-Atqc", "SELECT txid_current()"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

async fn open(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One connection's answers, and when it ran out of requests (its last answer), if it
/// did.
async fn connection(
    addr: SocketAddr,
    host: Arc<str>,
    mut script: Box<dyn Script>,
    measure_from: Instant,
    until: Instant,
) -> (Outcome, Option<Instant>) {
    let mut outcome = Outcome::default();
    let mut last_answer = Instant::now();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < until {
        let mut current = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match open(addr).await {
                Ok(s) => s,
                Err(_) => {
                    outcome.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if let Some(pause) = script.pause() {
            tokio::time::sleep(pause).await;
        }
        let Some(call) = script.next() else {
            return (outcome, Some(last_answer));
        };
        let mut request = Request::builder()
            .method(call.method)
            .uri(&call.path)
            .header("host", &*host);
        if call.body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(client) = &call.forwarded_for {
            request = request.header("x-forwarded-for", client);
        }
        let Ok(request) = request.body(Full::new(Bytes::from(call.body.unwrap_or_default())))
        else {
            outcome.errors += 1;
            continue;
        };
        let sent = Instant::now();
        let answer = async {
            current.ready().await?;
            let response = current.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let done = Instant::now();
        last_answer = done;
        match answer {
            Ok((status, body)) => {
                // Wall time, to compare with the mail files' times (mail delay).
                #[allow(clippy::disallowed_methods)]
                let now = SystemTime::now();
                script.answered(status, &body, now);
                // Counted by when it was answered, as wrk does.
                if done >= measure_from && done <= until {
                    let micros =
                        u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX);
                    outcome.latencies_us.push(micros);
                    *outcome.statuses.entry(status).or_default() += 1;
                }
                sender = Some(current);
            }
            Err(_) => outcome.errors += 1,
        }
    }
    (outcome, None)
}

/// One request on a fresh connection, for set-up: status and body.
pub async fn once(addr: SocketAddr, call: Call) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut sender = open(addr).await?;
    let mut request = Request::builder()
        .method(call.method)
        .uri(&call.path)
        .header("host", addr.to_string());
    if call.body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(call.body.unwrap_or_default())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

#[cfg(test)]
mod tests {
    use super::{listener, tree_cpu_time};

    #[test]
    fn the_process_listening_on_a_port_is_found_and_its_cpu_time_read() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(listener(port), Some(std::process::id()));
        drop(socket);
        assert_eq!(listener(port), None, "nothing listens there any more");
        assert!(tree_cpu_time(std::process::id()).is_some());
    }
}
