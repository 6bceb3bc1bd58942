//! The request log and request metrics: one short line per request (INFO; ERROR for
//! 5xx), with the request id (returned as `X-Request-Id`) and the client address as
//! computed by the trusted-proxy rules; never a body, a header value or a token.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;

use crate::client::Client;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request, for logs and the audit trail.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An incoming id is kept only from a trusted proxy, and only if it is short and plain.
fn incoming_id(req: &ServiceRequest, client: &Client) -> Option<String> {
    if !client.via_trusted_proxy {
        return None;
    }
    let id = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    plain.then(|| id.to_owned())
}

/// Middleware: logs the request once it is answered and records its metrics.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let started = Instant::now();
    let client = Client::of_request(req.request());
    let id =
        incoming_id(&req, &client).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.call(req).instrument(span).await?;
    let status = response.status().as_u16();
    // The route pattern, never the raw path (which may be anything a client sends).
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let latency = started.elapsed();
    let latency_ms = latency.as_secs_f64() * 1_000.0;
    let client = client.display();
    if status >= 500 {
        tracing::error!(target: "passcode::request", %method, %route, status, latency_ms, request_id = %id, %client, "request");
    } else {
        tracing::info!(target: "passcode::request", %method, %route, status, latency_ms, request_id = %id, %client, "request");
    }
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("passcode_http_requests_total", &labels).increment(1);
    metrics::histogram!("passcode_http_request_duration_seconds", &labels)
        .record(latency.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
