//! Logging: `tracing` to stdout, text or JSON, filtered by `RUST_LOG` or `log.level`,
//! in colour only on a terminal (and not with `NO_COLOR`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::LogSettings;

/// Keeps the service's log writer: dropping it writes the lines still queued, then
/// stops its thread.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber, each line written to stdout by the thread that
/// logs it; later calls are no-ops (tests start many apps).
pub fn init(settings: &LogSettings) {
    install(settings, std::io::stdout);
}

/// Installs the global subscriber for the service: a thread of its own writes the
/// lines, as many as have queued in one write, so that no request thread waits on
/// stdout (one write a request cost a wrong code about 10% of its throughput). No
/// line is dropped: with 128k lines queued, a logging thread waits, as it would on
/// stdout. Lines still queued are lost if the process is killed, not if it stops:
/// keep the guard until the end.
pub fn init_off_thread(settings: &LogSettings) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(Lingering::new(std::io::stdout(), LINGER));
    install(settings, writer);
    guard
}

/// How long the log's thread waits before it writes what it has: the lines of that
/// moment go in one write.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// A buffered writer whose flush first waits `linger` if it has anything to write.
/// The log's thread flushes whenever its queue is empty, which under load happened
/// after every few lines (about 5,000 writes a second during a wrong-code flood);
/// lines queued while it waits are taken before the next flush, so a write carries a
/// millisecond's lines and a line reaches stdout at most about a millisecond later.
struct Lingering<W: std::io::Write> {
    buffered: std::io::BufWriter<W>,
    linger: std::time::Duration,
}

impl<W: std::io::Write> Lingering<W> {
    fn new(inner: W, linger: std::time::Duration) -> Self {
        Self {
            buffered: std::io::BufWriter::with_capacity(64 * 1024, inner),
            linger,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Lingering<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.buffered.write(line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffered.buffer().is_empty() {
            std::thread::sleep(self.linger);
        }
        self.buffered.flush()
    }
}

fn install<W>(settings: &LogSettings, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    let _ = if settings.format == crate::settings::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    use super::Lingering;

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counted {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl std::io::Write for Counted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines wait in the buffer until a flush, which waits the linger first and then
    /// writes them all at once.
    #[test]
    fn lines_go_out_together_after_the_linger() {
        let linger = Duration::from_millis(30);
        let mut log = Lingering::new(Counted::default(), linger);
        log.flush().unwrap();
        assert_eq!(log.buffered.get_ref().writes, 0, "an empty flush wrote");
        for n in 0..3 {
            writeln!(log, "line {n}").unwrap();
        }
        assert_eq!(log.buffered.get_ref().writes, 0, "written before a flush");
        let started = Instant::now();
        log.flush().unwrap();
        assert!(started.elapsed() >= linger, "no linger");
        let out = log.buffered.get_ref();
        assert_eq!(out.writes, 1);
        assert_eq!(out.bytes, b"line 0\nline 1\nline 2\n");
    }
}
