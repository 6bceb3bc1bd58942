//! Wiring: builds every adapter from the settings, plugs them into the domain, and
//! binds the HTTP server. Tests call [`Application::build`] with port 0.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{NormalizePath, TrailingSlash};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use passcode_domain::otp::OsCodeGenerator;
use passcode_domain::ports::{Clock, Limit, Throttle};
use passcode_domain::service::{DeliverySettings, MailDelivery};
use passcode_domain::{
    AbuseLimits, AuthService, OtpHasher, OtpSettings, Ports, RegistrationPolicy, ServiceSettings,
};
use passcode_http::HttpState;
use passcode_jwt::jsonwebtoken_algorithm;
use passcode_jwt::{JwtIssuer, JwtSettings, Key, KeySet, SigningKeySource};
use passcode_mail::{LettreMailer, MailSettings, SmtpSettings, SmtpTls, TransportSettings};
use passcode_password::{Argon2Hasher, HashingSettings};
use passcode_persistence::{DatabaseSettings, MailKey, Store};
use rand::TryRng;
use rand::rngs::SysRng;
use secrecy::ExposeSecret;

use crate::clock::SystemClock;
use crate::secrets::load_or_create;
use crate::settings::{JwtAlgorithm, PolicySetting, Seconds, Settings, TlsSetting, TransportKind};
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
        let (service, jwks) = assemble(
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
        let mut server = HttpServer::new(move || {
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
        .listen(listener)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let delivery = MailDelivery::new(
            storage.outbox.clone(),
            mailer,
            clock.clone(),
            delivery_settings(&settings),
        );
        let worker = MailWorker::start(
            delivery,
            settings.mail.outbox.poll_interval_ms.duration(),
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
    /// lets in-flight requests finish; then the mail worker finishes the sends it has
    /// started and stops. Messages not sent stay queued for the next start.
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
        self.worker.stop().await;
        served
    }
}

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

/// The domain service on the configured adapters (and the JWKS to publish). `wake`
/// rings when a request queues mail.
pub(crate) fn assemble(
    settings: &Settings,
    storage: &Storage,
    replaced: Replaced,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<(AuthService, Arc<serde_json::Value>)> {
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
    let service = AuthService::new(
        Ports {
            users: storage.users.clone(),
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
            throttle: storage.throttle.clone(),
            refresh_tokens: storage.refresh_tokens.clone(),
            clock: replaced.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            codes: Arc::new(OsCodeGenerator),
            audit: storage.audit.clone(),
        },
        OtpHasher::new(otp_secret(settings)?),
        service_settings(settings)?,
    );
    Ok((service, jwks))
}

/// A database server (PostgreSQL, MariaDB) means instances may share the database:
/// each must then have the same code secret and signing key, which a generated one
/// (in this instance's data folder) is only if the data folder itself is shared.
fn warn_if_generated_secrets_on_shared_database(settings: &Settings, store: &Store) {
    if matches!(store, Store::Sqlite(_)) {
        return;
    }
    let mut generated = Vec::new();
    if settings.otp.secret.is_none() {
        generated.push("otp.secret");
    }
    if settings.jwt.algorithm != JwtAlgorithm::HS256 && settings.jwt.private_key_file.is_none() {
        generated.push("jwt.private_key_file");
    }
    if !generated.is_empty() {
        tracing::warn!(
            settings = %generated.join(", "),
            data_dir = %settings.data.dir.display(),
            "PostgreSQL is used with a secret generated by this instance: other instances on \
             this database cannot verify its codes, read its queued mail or accept its tokens \
             unless they share the data folder. Set these settings on every instance \
             (see docs/deployment.md)"
        );
    }
}

pub(crate) fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = &settings.database;
    Store::connect(&DatabaseSettings {
        url: db.url.clone(),
        max_connections: db.max_connections,
        acquire_timeout: db.acquire_timeout_seconds.duration(),
        busy_timeout: db.busy_timeout_ms.duration(),
        statement_timeout: db.statement_timeout_seconds.duration(),
        mail_key: mail_key(settings)?,
    })
}

/// The key that seals queued mail, derived from the code secret. Commands that run
/// before the service ever started (`migrate`) must not create the secret: with none
/// yet, there is no queued mail to read, and a throwaway key will do.
fn mail_key(settings: &Settings) -> anyhow::Result<MailKey> {
    let has_secret = settings.otp.secret.is_some() || data_file(settings, "otp-secret").exists();
    Ok(if has_secret {
        MailKey::derive(&otp_secret(settings)?)
    } else {
        MailKey::random()
    })
}

pub(crate) fn data_file(settings: &Settings, name: &str) -> PathBuf {
    settings.data.dir.join(name)
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SysRng
        .try_fill_bytes(&mut bytes)
        .context("operating system RNG")?;
    Ok(bytes)
}

fn otp_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(configured) = &settings.otp.secret {
        let configured = configured.expose_secret();
        anyhow::ensure!(
            configured.len() >= 32,
            "otp.secret must be at least 32 characters"
        );
        return Ok(configured.as_bytes().to_vec());
    }
    let encoded = load_or_create(&data_file(settings, "otp-secret"), || {
        Ok(STANDARD.encode(random_bytes::<32>()?))
    })?;
    STANDARD
        .decode(encoded.trim())
        .context("the otp-secret file in the data folder is corrupt")
}

fn signing_key(settings: &Settings) -> anyhow::Result<SigningKeySource> {
    if settings.jwt.algorithm == JwtAlgorithm::HS256 {
        let Some(secret) = settings.jwt.secret.clone() else {
            anyhow::bail!("jwt.algorithm = \"HS256\" needs jwt.secret (at least 32 bytes)");
        };
        return Ok(SigningKeySource::Hs256(secret));
    }
    Ok(SigningKeySource::KeySet(load_keys(settings)?))
}

pub(crate) fn jwt_algorithm(algorithm: JwtAlgorithm) -> jsonwebtoken_algorithm::Algorithm {
    match algorithm {
        JwtAlgorithm::EdDSA => jsonwebtoken_algorithm::Algorithm::EdDSA,
        JwtAlgorithm::ES256 => jsonwebtoken_algorithm::Algorithm::ES256,
        JwtAlgorithm::RS256 => jsonwebtoken_algorithm::Algorithm::RS256,
        JwtAlgorithm::HS256 => jsonwebtoken_algorithm::Algorithm::HS256,
    }
}

pub(crate) fn keys_dir(settings: &Settings) -> PathBuf {
    settings
        .jwt
        .keys_dir
        .clone()
        .unwrap_or_else(|| data_file(settings, "jwt-keys"))
}

/// The default key (`jwt.private_key_file`, or one created on first start in the data
/// folder), plus every key of the keys folder. The signer is the keys folder's active
/// key once `passcode keys activate` or `rotate` named one, else the default key.
pub(crate) fn load_keys(settings: &Settings) -> anyhow::Result<KeySet> {
    let algorithm = jwt_algorithm(settings.jwt.algorithm);
    let path = settings.jwt.private_key_file.clone().unwrap_or_else(|| {
        let name = match settings.jwt.algorithm {
            JwtAlgorithm::EdDSA => "jwt-ed25519.pem",
            JwtAlgorithm::ES256 => "jwt-es256.pem",
            _ => "jwt-rs256.pem",
        };
        data_file(settings, name)
    });
    let pem = load_or_create(&path, || Ok(Key::generate(algorithm)?.pem().to_owned()))?;
    let key = Key::from_pem(&pem).with_context(|| format!("loading {}", path.display()))?;
    let default_kid = key.kid().to_owned();
    KeySet::load(&keys_dir(settings), vec![key], Some(default_kid))
}

fn jwt_settings(settings: &Settings) -> JwtSettings {
    let jwt = &settings.jwt;
    JwtSettings {
        issuer: jwt.issuer.clone(),
        audience: jwt.audience.clone(),
        access_ttl: jwt.access_ttl_seconds.chrono(),
        refresh_ttl: jwt.refresh_ttl_seconds.chrono(),
        leeway: jwt.leeway_seconds.chrono(),
    }
}

fn service_settings(settings: &Settings) -> anyhow::Result<ServiceSettings> {
    // Values were checked once (`check::ensure_valid`), before anything started.
    let otp = &settings.otp;
    Ok(ServiceSettings {
        policy: match settings.registration.policy {
            PolicySetting::VerificationRequired => RegistrationPolicy::VerificationRequired,
            PolicySetting::TokensBeforeVerification => RegistrationPolicy::TokensBeforeVerification,
        },
        otp: OtpSettings {
            length: otp.length,
            ttl: otp.ttl_seconds.chrono(),
            max_attempts: otp.max_attempts,
        },
        limits: abuse_limits(settings),
        password_min_score: settings.limits.password_min_score,
        refresh_grace: settings.jwt.refresh_reuse_grace_seconds.chrono(),
        session_max: settings.jwt.session_max_seconds.chrono(),
        sign_in_by_code: settings.registration.sign_in_by_code,
    })
}

fn abuse_limits(settings: &Settings) -> AbuseLimits {
    let l = &settings.limits;
    let limit = |limit: u32, window: Seconds, cooldown: Seconds| Limit {
        limit,
        window: window.chrono(),
        cooldown: cooldown.chrono(),
    };
    let none = Seconds(0);
    AbuseLimits {
        guesses: limit(l.guess_budget, l.guess_window_seconds, none),
        guesses_per_client: limit(l.guess_budget_per_client, l.guess_window_seconds, none),
        login_failures: limit(l.login_failures, l.login_window_seconds, none),
        login_failures_per_client: limit(
            l.login_failures_per_client,
            l.login_client_window_seconds,
            none,
        ),
        sends: limit(
            l.resend_cap,
            l.resend_window_seconds,
            l.resend_cooldown_seconds,
        ),
        client_requests: limit(l.client_requests, l.client_window_seconds, none),
    }
}

fn trusted_proxies(settings: &Settings) -> anyhow::Result<Vec<ipnet::IpNet>> {
    settings
        .limits
        .trusted_proxies
        .iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| {
                    format!("limits.trusted_proxies: {entry:?} is not an address or CIDR")
                })
        })
        .collect()
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

fn hashing_settings(settings: &Settings) -> HashingSettings {
    let h = &settings.hashing;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    HashingSettings {
        memory_kib: h.memory_kib,
        iterations: h.iterations,
        parallelism: h.parallelism,
        max_concurrent: if h.max_concurrent == 0 {
            cores
        } else {
            h.max_concurrent
        },
        max_queued: h.max_queued,
    }
}

pub(crate) fn mail_settings(settings: &Settings) -> anyhow::Result<MailSettings> {
    let mail = &settings.mail;
    let transport = match mail.transport {
        TransportKind::Log => TransportSettings::Log,
        TransportKind::File => TransportSettings::File {
            dir: mail.file_dir.clone(),
        },
        TransportKind::Smtp => {
            let smtp = &mail.smtp;
            let Some(host) = smtp.host.clone() else {
                anyhow::bail!("mail.transport = \"smtp\" needs mail.smtp.host");
            };
            TransportSettings::Smtp(SmtpSettings {
                host,
                port: smtp.port,
                tls: match smtp.tls {
                    TlsSetting::Implicit => SmtpTls::Implicit,
                    TlsSetting::Starttls => SmtpTls::Starttls,
                    TlsSetting::None => SmtpTls::None,
                },
                username: smtp.username.clone(),
                password: smtp.password.clone(),
                timeout: smtp.timeout_seconds.duration(),
                ca_file: smtp.ca_file.clone(),
                pool_size: smtp.pool_size,
            })
        }
        TransportKind::Http => {
            let hook = &mail.http;
            let (Some(url), Some(secret)) = (hook.url.clone(), hook.secret.clone()) else {
                anyhow::bail!("mail.transport = \"http\" needs mail.http.url and mail.http.secret");
            };
            TransportSettings::Http(passcode_mail::HookSettings {
                url,
                secret,
                timeout: hook.timeout_seconds.duration(),
            })
        }
    };
    Ok(MailSettings {
        from: mail.from.clone(),
        product_name: mail.product_name.clone(),
        templates_dir: mail.templates_dir.clone(),
        transport,
    })
}

fn delivery_settings(settings: &Settings) -> DeliverySettings {
    let o = &settings.mail.outbox;
    DeliverySettings {
        batch: o.workers,
        max_attempts: o.max_attempts,
        lease: o.lease_seconds.chrono(),
        backoff_base: o.backoff_base_ms.chrono(),
        backoff_max: o.backoff_max_ms.chrono(),
    }
}
