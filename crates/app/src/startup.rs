//! Wiring: builds every adapter from the settings, plugs them into the domain, and
//! binds the HTTP server. Tests call [`Application::build`] with port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{NormalizePath, TrailingSlash};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use passcode_domain::otp::OsCodeGenerator;
use passcode_domain::ports::{Clock, Throttle};
use passcode_domain::service::MailDelivery;
use passcode_domain::{AuthService, OtpHasher, Ports};
use passcode_http::HttpState;
use passcode_jwt::JwtIssuer;
use passcode_mail::LettreMailer;
use passcode_password::Argon2Hasher;
use passcode_persistence::Store;

use crate::adapters::{
    delivery_settings, hashing_settings, http_workers, jwt_settings, mail_settings, open_store,
    otp_secret, service_settings, signing_key, trusted_proxies,
    warn_if_generated_secrets_on_shared_database,
};
use crate::clock::SystemClock;
use crate::give_back::{GiveBackLater, GiveBackTask};
use crate::settings::{Settings, TransportKind};
use crate::waking::Waking;
use crate::worker::MailWorker;

/// Every persistence port, from one backend: passcode's own (`Storage::of`) or yours.
/// Each method's contract is in its port's documentation and in docs/adapters.md; the
/// repository contract suite (`crates/persistence/tests/contract`) checks a backend.
#[derive(Clone)]
pub struct Storage {
    pub users: Arc<dyn passcode_domain::ports::UserRepository>,
    pub otps: Arc<dyn passcode_domain::ports::OtpStore>,
    pub outbox: Arc<dyn passcode_domain::ports::Outbox>,
    pub throttle: Arc<dyn Throttle>,
    pub refresh_tokens: Arc<dyn passcode_domain::ports::RefreshTokenStore>,
    pub audit: Arc<dyn passcode_domain::ports::AuditLog>,
    /// What `/health/ready` asks.
    pub health: Arc<dyn passcode_domain::ports::HealthCheck>,
}

impl Storage {
    /// The ports of one of passcode's own stores.
    pub fn of(store: &Store) -> Self {
        Self {
            users: store.users(),
            otps: store.otps(),
            outbox: store.outbox(),
            throttle: store.throttle(),
            refresh_tokens: store.refresh_tokens(),
            audit: store.audit(),
            health: store.health(),
        }
    }
}

/// Builds an [`Application`] from the settings, with any adapter replaced by your own.
/// What is not replaced is built from the settings, as the `passcode` binary does.
///
/// ```no_run
/// # async fn run(settings: passcode_app::Settings, mailer: std::sync::Arc<dyn passcode_domain::ports::Mailer>) -> anyhow::Result<()> {
/// let app = passcode_app::Application::builder(settings)
///     .mailer(mailer)
///     .build()
///     .await?;
/// app.run_until_stopped().await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct Builder {
    settings: Settings,
    storage: Option<Storage>,
    mailer: Option<Arc<dyn passcode_domain::ports::Mailer>>,
    passwords: Option<Arc<dyn passcode_domain::ports::PasswordHasher>>,
    tokens: Option<(
        Arc<dyn passcode_domain::ports::TokenIssuer>,
        serde_json::Value,
    )>,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("storage", &self.storage.is_some())
            .field("mailer", &self.mailer.is_some())
            .field("passwords", &self.passwords.is_some())
            .field("tokens", &self.tokens.is_some())
            .field("clock", &self.clock.is_some())
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Persistence of your own, instead of `database.url`: nothing is migrated, and
    /// the database pool's gauges are left out of `/metrics`.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Delivery of your own, instead of `mail.transport` (the outbox still queues and
    /// retries: your mailer is called by its worker, never by a request).
    pub fn mailer(mut self, mailer: Arc<dyn passcode_domain::ports::Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Password hashing of your own, instead of `[hashing]`.
    pub fn password_hasher(
        mut self,
        hasher: Arc<dyn passcode_domain::ports::PasswordHasher>,
    ) -> Self {
        self.passwords = Some(hasher);
        self
    }

    /// Tokens of your own, instead of `[jwt]`, with the JWKS document to publish at
    /// `/.well-known/jwks.json` (`{"keys": []}` if there are no public keys).
    pub fn token_issuer(
        mut self,
        issuer: Arc<dyn passcode_domain::ports::TokenIssuer>,
        jwks: serde_json::Value,
    ) -> Self {
        self.tokens = Some((issuer, jwks));
        self
    }

    /// Time of your own (tests that move the clock), instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Opens what was not replaced, binds the listener and starts the mail worker.
    /// Must run in a tokio runtime.
    pub async fn build(self) -> anyhow::Result<Application> {
        Application::assemble_and_bind(self).await
    }
}

/// A running (bound, not yet awaited) passcode server, and its mail worker.
pub struct Application {
    port: u16,
    server: Server,
    worker: MailWorker,
    give_backs: GiveBackTask,
    metrics: Option<(u16, Server)>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the database (migrating it if configured), loads or creates the keys,
    /// builds the mailer and hasher, and binds the listener. Must run in a tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::builder(settings).build().await
    }

    /// Starts from the settings; replace adapters on the [`Builder`], then `build`.
    pub fn builder(settings: Settings) -> Builder {
        Builder {
            settings,
            storage: None,
            mailer: None,
            passwords: None,
            tokens: None,
            clock: None,
        }
    }

    async fn assemble_and_bind(builder: Builder) -> anyhow::Result<Self> {
        let settings = builder.settings;
        // Refuse bad values, all named at once, before anything starts.
        crate::check::ensure_valid(&settings)?;
        // Installed before anything counts.
        crate::metrics::recorder();
        // The code secret first: the store seals queued mail with a key derived from it.
        otp_secret(&settings)?;
        let (storage, store) = match builder.storage {
            Some(storage) => (storage, None),
            None => {
                let store = open_store(&settings)?;
                warn_if_generated_secrets_on_shared_database(&settings, &store);
                if settings.database.migrate_on_start {
                    let applied = store
                        .migrate()
                        .await
                        .context("applying database migrations")?;
                    if !applied.is_empty() {
                        tracing::info!(?applied, "applied database migrations");
                    }
                }
                (Storage::of(&store), Some(store))
            }
        };
        let clock: Arc<dyn Clock> = builder.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let own_mailer = builder.mailer.is_none();
        let mailer: Arc<dyn passcode_domain::ports::Mailer> = match builder.mailer {
            Some(mailer) => mailer,
            None => Arc::new(LettreMailer::new(
                &mail_settings(&settings)?,
                clock.clone(),
            )?),
        };
        if own_mailer && settings.mail.transport == TransportKind::Log {
            tracing::warn!(
                "mail.transport is \"log\": messages, codes included, are written to the log. \
                 For development only; configure mail.transport = \"smtp\" in production"
            );
        }
        let trusted_proxies = trusted_proxies(&settings)?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let (service, jwks, give_backs) = assemble(
            &settings,
            &storage,
            Replaced {
                passwords: builder.passwords,
                tokens: builder.tokens,
                clock: Some(clock.clone()),
            },
            wake.clone(),
        )?;
        spawn_purge(
            storage.throttle.clone(),
            storage.audit.clone(),
            clock.clone(),
            settings.limits.purge_interval_seconds.duration(),
            chrono::Duration::days(i64::from(settings.audit.retention_days)),
        );
        let client_limiter = Arc::new(passcode_http::ClientLimiter::new(
            service.settings().limits.client_requests,
        ));
        spawn_forget_idle_clients(
            client_limiter.clone(),
            settings.limits.client_window_seconds.duration(),
        );
        let state = HttpState {
            client_limiter,
            service,
            health: storage.health.clone(),
            jwks,
            trusted_proxies: Arc::new(trusted_proxies),
        };

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let port = listener.local_addr()?.port();
        let body_limit = settings.server.body_limit_bytes;
        let docs = settings.server.docs;
        let cors = passcode_http::CorsSettings {
            allowed_origins: settings.server.cors.allowed_origins.clone(),
            max_age_seconds: usize::try_from(settings.server.cors.max_age_seconds.0)
                .unwrap_or(usize::MAX),
        };
        // Each worker borrows from its own group of database connections
        // (PostgreSQL and MariaDB; `passcode_persistence::affinity`).
        let numbered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = HttpServer::new(move || {
            passcode_persistence::affinity::number_this_thread(&numbered);
            App::new()
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                // No origins listed: no CORS middleware, so no CORS headers at all.
                .wrap(actix_web::middleware::Condition::new(
                    !cors.allowed_origins.is_empty(),
                    passcode_http::cors(&cors),
                ))
                .wrap(actix_web::middleware::from_fn(passcode_http::request_log))
                .configure(passcode_http::configure(state.clone(), body_limit, docs))
                .default_service(web::to(passcode_http::not_found))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_seconds.0)
        .workers(http_workers(&settings))
        // SQLite runs each statement on a blocking thread of the worker's runtime.
        // Left at tokio's default, a flood grows dozens, and each keeps its own
        // allocator heap on a 2 MiB huge page; two per worker answered as fast
        // (docs/performance.md, "Blocking threads").
        .worker_max_blocking_threads(settings.server.blocking_threads)
        .listen(listener)?;
        let delivery = MailDelivery::new(
            storage.outbox.clone(),
            mailer,
            clock.clone(),
            delivery_settings(&settings),
        );
        let worker = MailWorker::start(
            delivery,
            settings.mail.outbox.poll_interval_ms.duration(),
            settings.mail.outbox.gather_ms.duration(),
            wake,
        );
        let metrics = if let Some(listen) = &settings.metrics.listen {
            let listener = TcpListener::bind(listen.as_str())
                .with_context(|| format!("binding metrics.listen {listen}"))?;
            let metrics_port = listener.local_addr()?.port();
            tracing::info!(address = %listen, "metrics at /metrics");
            let served =
                crate::metrics::serve(listener, storage.outbox.clone(), store, clock.clone())?;
            Some((metrics_port, served))
        } else {
            None
        };
        tracing::info!(address = %settings.server.host, port, "passcode is listening");
        Ok(Self {
            port,
            server: server.run(),
            worker,
            give_backs,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `/metrics` listener, if `metrics.listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    /// Serves until SIGINT/SIGTERM. Graceful: the server stops taking connections and
    /// lets in-flight requests finish; then the tries of failed requests still queued
    /// are given back (for up to `GIVE_BACKS_AT_SHUTDOWN`), and the mail worker
    /// finishes the sends it has started and stops. Messages not sent stay queued for
    /// the next start.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let served = self.server.await;
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        tokio::join!(
            self.give_backs.finish(GIVE_BACKS_AT_SHUTDOWN),
            self.worker.stop()
        );
        served
    }
}

/// How long a shutdown waits for the store to take the tries still queued to be given
/// back: three tries a second apart, with room for each write's own wait.
const GIVE_BACKS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Adapters replaced through the [`Builder`] (the others come from the settings).
#[derive(Default)]
pub(crate) struct Replaced {
    pub passwords: Option<Arc<dyn passcode_domain::ports::PasswordHasher>>,
    pub tokens: Option<(
        Arc<dyn passcode_domain::ports::TokenIssuer>,
        serde_json::Value,
    )>,
    pub clock: Option<Arc<dyn Clock>>,
}

/// The domain service on the configured adapters, the JWKS to publish, and the task
/// that gives back failed requests' tries later. `wake` rings when a request queues
/// mail.
pub(crate) fn assemble(
    settings: &Settings,
    storage: &Storage,
    replaced: Replaced,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<(AuthService, Arc<serde_json::Value>, GiveBackTask)> {
    let (tokens, jwks): (Arc<dyn passcode_domain::ports::TokenIssuer>, _) = match replaced.tokens {
        Some((issuer, jwks)) => (issuer, Arc::new(jwks)),
        None => {
            let jwt = JwtIssuer::new(signing_key(settings)?, jwt_settings(settings))?;
            let jwks = Arc::new(jwt.jwks().clone());
            (Arc::new(jwt), jwks)
        }
    };
    let passwords: Arc<dyn passcode_domain::ports::PasswordHasher> = match replaced.passwords {
        Some(hasher) => hasher,
        None => Arc::new(Argon2Hasher::new(&hashing_settings(settings))?),
    };
    let (throttle, give_backs) = GiveBackLater::new(storage.throttle.clone());
    let service = AuthService::new(
        Ports {
            users: Arc::new(Waking {
                inner: storage.users.clone(),
                wake: wake.clone(),
            }),
            otps: Arc::new(Waking {
                inner: storage.otps.clone(),
                wake: wake.clone(),
            }),
            outbox: Arc::new(Waking {
                inner: storage.outbox.clone(),
                wake,
            }),
            tokens,
            passwords,
            throttle: Arc::new(throttle),
            refresh_tokens: storage.refresh_tokens.clone(),
            clock: replaced.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            codes: Arc::new(OsCodeGenerator),
            audit: storage.audit.clone(),
        },
        OtpHasher::new(otp_secret(settings)?),
        service_settings(settings)?,
    );
    Ok((service, jwks, give_backs))
}

/// Drops per-client limit state of clients idle for a window, so that memory follows
/// the clients of the last minute, not of all time.
fn spawn_forget_idle_clients(limiter: Arc<passcode_http::ClientLimiter>, window: Duration) {
    let every = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            limiter.forget_idle();
        }
    });
}

/// Deletes expired codes and spent limit state now and then. Rows are kept a day
/// past their end, longer than any window, so no live limit is ever reset.
fn spawn_purge(
    throttle: Arc<dyn Throttle>,
    audit: Arc<dyn passcode_domain::ports::AuditLog>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    audit_retention: chrono::Duration,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            match throttle.purge(clock.now(), chrono::Duration::days(1)).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "purged expired codes and limit state"),
                Err(error) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "purge failed")
                }
            }
            match audit.purge_audit(clock.now() - audit_retention).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "purged audit events past their retention"),
                Err(error) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::new(error)), "audit purge failed")
                }
            }
        }
    });
}
