//! Prometheus metrics: the recorder (the `metrics` facade, rendered by
//! metrics-exporter-prometheus) and the `/metrics` listener on `metrics.listen`, apart
//! from the public port. Counters are kept where events happen (HTTP middleware,
//! hashing pool, mailer, throttle, refresh-token store); gauges of the outbox and the
//! database pool are sampled at each scrape.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use passcode_domain::ports::{Clock, Outbox};
use passcode_persistence::Store;

/// Latency buckets, in seconds: from a cache-fast answer to a slow argon2 hash.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Jobs per SQLite transaction (`group_commit`, at most 64).
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The process-wide recorder, installed on first use.
pub(crate) fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Only fails for an empty bucket list, which neither is.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("passcode_sqlite_batch_jobs".into()),
                    &BATCH_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (an embedding program's): render ours empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

struct Sources {
    outbox: Arc<dyn Outbox>,
    /// passcode's own store, for the pool's gauges (none with storage of one's own).
    store: Option<Store>,
    clock: Arc<dyn Clock>,
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
async fn scrape(sources: web::Data<Sources>) -> HttpResponse {
    match sources.outbox.stats().await {
        Ok(stats) => {
            metrics::gauge!("passcode_outbox_unsent").set(stats.unsent as f64);
            metrics::gauge!("passcode_outbox_failed").set(stats.failed as f64);
            let age = stats.oldest_unsent_at.map_or(0.0, |at| {
                (sources.clock.now() - at).num_milliseconds().max(0) as f64 / 1_000.0
            });
            metrics::gauge!("passcode_outbox_oldest_unsent_age_seconds").set(age);
        }
        Err(error) => tracing::warn!(%error, "outbox statistics unavailable for /metrics"),
    }
    if let Some(store) = &sources.store {
        let pool = store.pool_status();
        let in_use = pool.open.saturating_sub(pool.idle);
        metrics::gauge!("passcode_db_pool_connections", "state" => "in_use").set(in_use as f64);
        metrics::gauge!("passcode_db_pool_connections", "state" => "idle").set(pool.idle as f64);
        metrics::gauge!("passcode_db_pool_max_connections").set(pool.max as f64);
        metrics::gauge!("passcode_db_shared_connections").set(pool.shared as f64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(recorder().render())
}

/// Serves `GET /metrics` on `listener` (one worker).
pub(crate) fn serve(
    listener: TcpListener,
    outbox: Arc<dyn Outbox>,
    store: Option<Store>,
    clock: Arc<dyn Clock>,
) -> std::io::Result<Server> {
    let sources = web::Data::new(Sources {
        outbox,
        store,
        clock,
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(sources.clone())
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}
