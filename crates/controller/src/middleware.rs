//! Cross-cutting HTTP behaviour: request ids, CORS, `OPTIONS`, and the error envelope.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::distributions::Alphanumeric;

use crate::error::{ErrorMessage, NOT_AUTHORIZED, NOT_FOUND};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const ACTIVATION_ID: HeaderName = HeaderName::from_static("x-openwhisk-activation-id");

/// Marks a response whose body and headers come from an action (web actions): the middleware
/// must not replace its body, even for an error status.
#[derive(Debug, Clone, Copy)]
pub struct ActionResponse;

/// The transaction id of a request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct TransactionId(pub String);

fn new_tid() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn request_tid(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && !v.starts_with("sid_"))
        .map(str::to_owned)
        .unwrap_or_else(new_tid)
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => NOT_FOUND.to_owned(),
        StatusCode::FORBIDDEN => NOT_AUTHORIZED.to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_owned(),
    }
}

/// Middleware for `/api/v1` (except web actions, which have their own CORS rules).
pub async fn api(mut req: Request, next: Next) -> Response {
    let tid = request_tid(req.headers());
    let is_web = req.uri().path().starts_with("/api/v1/web/");
    if req.method() == Method::OPTIONS && !is_web {
        let mut res = StatusCode::OK.into_response();
        finish(&mut res, &tid, true);
        return res;
    }
    req.extensions_mut().insert(TransactionId(tid.clone()));
    let mut res = next.run(req).await;
    finish(&mut res, &tid, !is_web);
    res
}

fn finish(res: &mut Response, tid: &str, cors: bool) {
    let status = res.status();
    let message = res.extensions_mut().remove::<ErrorMessage>();
    let from_action = res.extensions().get::<ActionResponse>().is_some();
    if (status.is_client_error() || status.is_server_error()) && !from_action {
        let needs_body = message.is_some()
            || !res.headers().contains_key(header::CONTENT_TYPE)
            || res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        if needs_body {
            let msg = message
                .map(|m| m.0)
                .unwrap_or_else(|| default_message(status));
            let body = serde_json::json!({"error": msg, "code": tid});
            *res.body_mut() = Body::from(body.to_string());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tid) {
        h.insert(REQUEST_ID, v);
    }
    if cors {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, DELETE, POST, PUT, HEAD"),
        );
    }
}
