//! Logging: `tracing` to stdout, text or JSON, filtered by `RUST_LOG` or `log.level`.

use tracing_subscriber::EnvFilter;

use crate::settings::LogSettings;

/// Installs the global subscriber; later calls are no-ops (tests start many apps).
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if settings.format == crate::settings::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
