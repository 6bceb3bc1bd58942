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
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    install(settings, writer);
    guard
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
