//! Who the client is (its IP address, through trusted proxies only), and the
//! per-client limit on unauthenticated endpoints.

use std::net::IpAddr;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use ipnet::IpNet;

use crate::{ApiError, HttpState};

/// The client's address: the socket's peer, unless that peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself trusted.
/// Entries a client wrote (to the left) are never believed over a proxy's own.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for entry in forwarded_for.unwrap_or_default().rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            // A malformed hop: stop at the last address known good.
            Err(_) => break,
        }
    }
    Some(client)
}

/// Middleware: counts the request against the client's limit for this endpoint.
pub(crate) async fn limit_clients(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<HttpState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let client = client_ip(
        req.peer_addr().map(|a| a.ip()),
        forwarded.as_deref(),
        &state.trusted_proxies,
    )
    .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let endpoint = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let refusal = match state.service.admit_client(&endpoint, &client).await {
        Ok(Ok(())) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Ok(Err(throttled)) => ApiError::throttled(throttled),
        Err(infra) => ApiError::from(infra),
    };
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
            client_ip(Some(ip("203.0.113.7")), Some("1.2.3.4"), &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(ip("203.0.113.7")), None, &[]),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.0.0.2"));
        assert_eq!(
            client_ip(peer, Some("198.51.100.9"), &trusted),
            Some(ip("198.51.100.9"))
        );
        // A client claiming to be 1.1.1.1 does not hide its real address.
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 198.51.100.9, 10.0.0.5"), &trusted),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            client_ip(peer, Some("garbage, 10.0.0.5"), &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_ip(peer, None, &trusted), Some(ip("10.0.0.2")));
    }
}
