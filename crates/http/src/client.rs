//! Who the client is (its IP address, through trusted proxies only), and the
//! per-client limit on unauthenticated endpoints.

use std::future::{Ready, ready};
use std::net::{IpAddr, Ipv6Addr};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use ipnet::IpNet;

use crate::{ApiError, HttpState};

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4
/// peers) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the socket's peer, unless that peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself trusted.
/// `forwarded_for` holds every `X-Forwarded-For` line in the order received (proxies
/// may append a line rather than extend one). Entries a client wrote (to the left)
/// are never believed over a proxy's own.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = forwarded_for.iter().rev().flat_map(|line| line.rsplit(','));
    for entry in hops {
        match parse_hop(entry.trim()) {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return Some(ip),
            // A malformed hop: stop at the last address known good.
            None => break,
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, possibly bracketed or with a port.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|socket| canonical(socket.ip()))
}

/// What limits and budgets count a client by: its IPv4 address, or its IPv6 /64 (one
/// subscriber usually holds a whole /64, so single addresses would be free to rotate).
pub(crate) fn client_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        None => "unknown".to_owned(),
    }
}

/// The client as computed by the trusted-proxy rules: `ip` for logs, `key` for limits.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub key: String,
    /// Whether the request came through a trusted proxy (whose headers are believed).
    pub via_trusted_proxy: bool,
}

impl Client {
    /// Computes the client of a request from its peer and headers.
    pub fn of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let lines: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = client_ip(peer, &lines, trusted);
        let via_trusted_proxy = peer
            .map(canonical)
            .is_some_and(|peer| trusted.iter().any(|net| net.contains(&peer)));
        Self {
            ip,
            key: client_key(ip),
            via_trusted_proxy,
        }
    }

    pub(crate) fn of_request(req: &HttpRequest) -> Self {
        if let Some(client) = req.extensions().get::<Self>() {
            return client.clone();
        }
        let trusted = req
            .app_data::<web::Data<HttpState>>()
            .map(|state| state.trusted_proxies.clone())
            .unwrap_or_default();
        let client = Self::of(req.peer_addr().map(|a| a.ip()), req.headers(), &trusted);
        req.extensions_mut().insert(client.clone());
        client
    }

    /// The address for logs: the computed client, never an unverified header.
    pub fn display(&self) -> String {
        self.ip
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

impl FromRequest for Client {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Self::of_request(req)))
    }
}

/// The client of a request, computed once and kept in its extensions (also for the
/// request log).
pub fn client_of(req: &HttpRequest) -> Client {
    Client::of_request(req)
}

type Keyed = governor::DefaultKeyedRateLimiter<(String, String)>;

/// Requests per (endpoint, client) on the unauthenticated endpoints, counted in this
/// instance's memory: a request costs no database write, and the limit holds per
/// instance (N instances allow N times as much). The budgets that must hold across
/// instances (guesses, failed logins, mails) are kept in the database instead.
/// A client may send `limit` requests at once, and one more every `window / limit`
/// (the generic cell rate algorithm, so there is no window edge to burst across).
pub struct ClientLimiter {
    limiter: Option<Keyed>,
}

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientLimiter {
    /// `limit.limit` requests per `limit.window`; a zero limit or window turns it off.
    pub fn new(limit: passcode_domain::ports::Limit) -> Self {
        let burst = std::num::NonZeroU32::new(limit.limit);
        let period = limit
            .window
            .to_std()
            .ok()
            .and_then(|window| window.checked_div(limit.limit));
        let quota = burst.zip(period).and_then(|(burst, period)| {
            governor::Quota::with_period(period).map(|q| q.allow_burst(burst))
        });
        Self {
            limiter: quota.map(governor::RateLimiter::keyed),
        }
    }

    /// `Err(wait)` when `client` has used up its requests to `endpoint` for now.
    pub fn check(&self, endpoint: &str, client: &str) -> Result<(), std::time::Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&(endpoint.to_owned(), client.to_owned()))
            .map_err(|not_until| {
                not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()))
            })
    }

    /// Forgets clients whose allowance is full again (call now and then: memory).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Middleware: counts the request against the client's limit for this endpoint.
pub(crate) async fn limit_clients(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<HttpState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let client = Client::of_request(req.request());
    let endpoint = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let Err(wait) = state.client_limiter.check(&endpoint, &client.key) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    metrics::counter!("passcode_throttle_denials_total", "limit" => "client_requests").increment(1);
    let retry_after = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    let refusal = ApiError::throttled(passcode_domain::Throttled { retry_after });
    Ok(req.into_response(refusal.error_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_forward() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(Some(ip("203.0.113.7")), &["1.2.3.4"], &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(ip("203.0.113.7")), &[], &[]),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.0.0.2"));
        assert_eq!(
            client_ip(peer, &["198.51.100.9"], &trusted),
            Some(ip("198.51.100.9"))
        );
        // A client claiming to be 1.1.1.1 does not hide its real address.
        assert_eq!(
            client_ip(peer, &["1.1.1.1, 198.51.100.9, 10.0.0.5"], &trusted),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            client_ip(peer, &["garbage, 10.0.0.5"], &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_ip(peer, &[], &trusted), Some(ip("10.0.0.2")));
    }

    #[test]
    fn every_forwarded_line_is_read_in_order() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.0.0.2"));
        // The client wrote the first line; the proxy appended its own second line.
        assert_eq!(
            client_ip(peer, &["1.1.1.1", "198.51.100.9"], &trusted),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            client_ip(peer, &["1.1.1.1", "198.51.100.9, 10.0.0.7"], &trusted),
            Some(ip("198.51.100.9"))
        );
        // Ports and brackets, as some proxies write them.
        assert_eq!(
            client_ip(peer, &["[2001:db8::1]:4711"], &trusted),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(Some(ip("::ffff:127.0.0.1")), &["203.0.113.9"], &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(Some(ip("::ffff:203.0.113.9")), &[], &[]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(
            client_key(Some(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"))),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(Some(ip("2001:db8:1:2::1"))),
            client_key(Some(ip("2001:db8:1:2:ffff::9")))
        );
        assert_eq!(client_key(Some(ip("203.0.113.9"))), "203.0.113.9");
    }
}

/// The client's `User-Agent`, for its list of sessions: at most 200 characters, no
/// control characters.
fn user_agent(req: &HttpRequest) -> Option<String> {
    let raw = req.headers().get("user-agent")?.to_str().ok()?;
    let clean: String = raw.chars().filter(|c| !c.is_control()).take(200).collect();
    (!clean.trim().is_empty()).then(|| clean.trim().to_owned())
}

/// Who is calling: the client's key for limits, and for the audit trail its address
/// and the request id.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: String,
    pub context: passcode_domain::RequestContext,
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let client = Client::of_request(req);
        let request_id = req
            .extensions()
            .get::<crate::log::RequestId>()
            .map(|id| id.0.clone());
        ready(Ok(Self {
            context: passcode_domain::RequestContext {
                client: client.ip.map(|ip| ip.to_string()),
                request_id,
                user_agent: user_agent(req),
            },
            key: client.key,
        }))
    }
}
