//! SMTP: lettre's protocol client on sockets opened here, pooled by deadpool.
//!
//! lettre's transport (0.11.23, the newest release) leaves Nagle's algorithm on and
//! writes a message's closing `.` apart from its body, so that line waits for the
//! server's delayed ACK: about 40 ms per message on a connection. Its fix is merged
//! upstream but not released, and the transport's socket cannot be reached (its
//! `Executor`, which connects, is sealed). So this module opens the TCP connection
//! with `TCP_NODELAY`, adds implicit TLS (tokio-rustls, as lettre does), and hands it to
//! lettre's `AsyncSmtpConnection` for the greeting, EHLO, STARTTLS, AUTH and messages.
//! The pool checks a connection with `NOOP` only when it has been idle for a second or
//! more; lettre's pool sends one before every message. Before any reuse it also looks,
//! without waiting, whether the server has closed the socket or said something
//! unasked (a `421` before closing): an idle SMTP server sends nothing. Drop this
//! module for lettre's transport once a release sets `TCP_NODELAY`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::{SmtpSettings, SmtpTls};

/// A connection whose last message began this long ago is checked with `NOOP` before
/// its next: the server may be gone without its close having reached us yet (a
/// dropped network path; a closed socket is seen without it). One used more recently
/// is not, which saves a round trip per message under load.
const CHECK_IDLE: Duration = Duration::from_secs(1);
/// A connection idle this long is closed with `QUIT`, as lettre's pool does.
const CLOSE_IDLE: Duration = Duration::from_secs(60);

/// Why an SMTP send failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SmtpError {
    #[error("could not connect: {0}")]
    Connect(io::Error),
    #[error("the TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl SmtpError {
    /// A 5xx answer: the server refused for good.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Smtp(error) if error.is_permanent())
    }

    /// What the failure most likely means, for someone setting up a provider.
    pub(crate) fn explain(&self) -> &'static str {
        let error = match self {
            Self::Tls(_) => return TLS_FAILED,
            Self::Timeout(_) => return NO_ANSWER,
            Self::Connect(_) => return UNREACHABLE,
            Self::Smtp(error) => error,
        };
        let code = error.status().map(|c| c.to_string());
        match code.as_deref() {
            Some("535" | "534" | "530") => {
                "the server refused the login: check mail.smtp.username and mail.smtp.password (many providers want an app password)"
            }
            Some(c) if c.starts_with('5') => {
                "the server refused the message for good: check mail.from (the provider may require a verified sender)"
            }
            Some(_) => "the server refused for now: try again later",
            None if error.is_tls() => TLS_FAILED,
            None if error.is_timeout() => NO_ANSWER,
            None => UNREACHABLE,
        }
    }
}

const TLS_FAILED: &str = "the TLS handshake failed: check mail.smtp.tls (465 = implicit, 587 = starttls) and the server's certificate";
const NO_ANSWER: &str = "the server did not answer in time: check mail.smtp.tls (465 = implicit, 587 = starttls), mail.smtp.host and mail.smtp.port, and that a firewall lets SMTP out";
const UNREACHABLE: &str = "could not talk to the server: check mail.smtp.host, mail.smtp.port and mail.smtp.tls (465 = implicit, 587 = starttls)";

/// Pooled SMTP connections to one server.
pub(crate) struct SmtpPool {
    pool: Pool<Connector>,
    /// Closes idle connections; stops with the pool.
    reaper: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpPool {
    fn drop(&mut self) {
        self.reaper.abort();
    }
}

impl SmtpPool {
    /// Builds the pool; connections are opened when first needed. Must run inside a
    /// tokio runtime (the idle reaper is spawned on it).
    pub(crate) fn new(smtp: &SmtpSettings) -> anyhow::Result<Self> {
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Starttls(Box::new(tls_parameters(smtp)?)),
            SmtpTls::Implicit => Tls::Implicit(
                tokio_rustls::TlsConnector::from(rustls_config(smtp)?),
                ServerName::try_from(smtp.host.clone()).with_context(|| {
                    format!("mail.smtp.host {:?} is not a host name", smtp.host)
                })?,
            ),
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            (None, None) => None,
            _ => anyhow::bail!("mail.smtp.username and mail.smtp.password go together"),
        };
        let connector = Connector {
            host: smtp.host.clone(),
            port: smtp.port,
            tls,
            credentials,
            timeout: smtp.timeout,
            hello: ClientId::default(),
        };
        let pool = Pool::builder(connector)
            .max_size(smtp.pool_size.max(1) as usize)
            .build()
            .context("building the SMTP pool")?;
        let weak = pool.weak();
        let reaper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(CLOSE_IDLE / 2).await;
                let Some(pool) = weak.upgrade() else { return };
                let idle = pool.retain(|_, metrics| metrics.last_used() < CLOSE_IDLE);
                for mut connection in idle.removed {
                    connection.inner.abort().await;
                }
            }
        });
        Ok(Self { pool, reaper })
    }

    /// Sends `message` over a pooled connection, or a new one.
    pub(crate) async fn send(&self, message: &Message) -> Result<Response, SmtpError> {
        let mut connection = self.pool.get().await.map_err(|error| match error {
            deadpool::managed::PoolError::Backend(error) => error,
            other => SmtpError::Connect(io::Error::other(other.to_string())),
        })?;
        // Marked clean again only when the exchange ends; a send cancelled halfway
        // (the caller's deadline) leaves the connection out of step, and it is dropped.
        connection.clean = false;
        let sent = connection
            .inner
            .send(message.envelope(), &message.formatted())
            .await;
        connection.clean = true;
        if sent.is_err() {
            // lettre has closed it if the error broke the exchange; not reused either way.
            drop(Object::take(connection));
        }
        Ok(sent?)
    }
}

enum Tls {
    None,
    Starttls(Box<TlsParameters>),
    Implicit(tokio_rustls::TlsConnector, ServerName<'static>),
}

struct Connector {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
}

pub(crate) struct Connection {
    inner: AsyncSmtpConnection,
    /// False while a message is being sent.
    clean: bool,
    /// The same socket, to peek at without reading what lettre reads.
    watch: std::net::TcpStream,
}

impl Connection {
    /// Whether the server closed the connection, or sent what nobody asked for, while
    /// it was idle. Peeks without blocking: nothing waiting means it is open.
    fn server_hung_up(&self) -> bool {
        !matches!(
            self.watch.peek(&mut [0u8; 1]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        )
    }
}

impl Manager for Connector {
    type Type = Connection;
    type Error = SmtpError;

    async fn create(&self) -> Result<Connection, SmtpError> {
        tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| SmtpError::Timeout(self.timeout))?
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<SmtpError> {
        if !connection.clean || connection.inner.has_broken() {
            return Err(RecycleError::message("broken"));
        }
        // A server that restarted or timed the connection out closed it, and the FIN
        // is here: no round trip needed, and no message sent into a closed connection.
        if connection.server_hung_up() {
            return Err(RecycleError::message("closed by the server"));
        }
        if metrics.last_used() >= CHECK_IDLE {
            let check = tokio::time::timeout(self.timeout, connection.inner.test_connected());
            if !check.await.unwrap_or(false) {
                return Err(RecycleError::message("closed by the server"));
            }
        }
        Ok(())
    }
}

impl Connector {
    async fn connect(&self) -> Result<Connection, SmtpError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(SmtpError::Connect)?;
        // The point of this module: a message's last line is not held back.
        tcp.set_nodelay(true).map_err(SmtpError::Connect)?;
        // A second handle on the socket, non-blocking like tokio's (they share the flag).
        let std_tcp = tcp.into_std().map_err(SmtpError::Connect)?;
        let watch = std_tcp.try_clone().map_err(SmtpError::Connect)?;
        watch.set_nonblocking(true).map_err(SmtpError::Connect)?;
        let tcp = TcpStream::from_std(std_tcp).map_err(SmtpError::Connect)?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Tls::Implicit(connector, name) => Box::new(TlsStream(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(SmtpError::Tls)?,
            )),
            Tls::None | Tls::Starttls(_) => Box::new(tcp),
        };
        let mut inner = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Tls::Starttls(parameters) = &self.tls {
            inner
                .starttls(TlsParameters::clone(parameters), &self.hello)
                .await?;
        }
        if let Some(credentials) = &self.credentials {
            inner
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(Connection {
            inner,
            clean: true,
            watch,
        })
    }
}

/// lettre's parameters for STARTTLS: the web's roots and `mail.smtp.ca_file`.
fn tls_parameters(smtp: &SmtpSettings) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if let Some(ca_file) = &smtp.ca_file {
        let pem =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        builder =
            builder.add_root_certificate(Certificate::from_pem(&pem).context("mail.smtp.ca_file")?);
    }
    Ok(builder.build_rustls()?)
}

/// The same trust for implicit TLS: the web's roots (webpki-roots) and
/// `mail.smtp.ca_file`, TLS 1.2 and 1.3 with ring, as lettre builds it.
fn rustls_config(smtp: &SmtpSettings) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca_file) = &smtp.ca_file {
        let certificates = CertificateDer::pem_file_iter(ca_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| format!("reading mail.smtp.ca_file {}", ca_file.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "mail.smtp.ca_file {} holds no certificate",
            ca_file.display()
        );
        for certificate in certificates {
            roots.add(certificate).context("mail.smtp.ca_file")?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A TLS stream lettre can drive (its stream trait wants the peer's address).
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
