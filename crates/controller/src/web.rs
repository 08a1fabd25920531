//! Web actions (wire spec §7): any action annotated `web-export: true` served at
//! `/api/v1/web/{namespace}/{package|default}/{action}[.ext][/path]`, run as its owner.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use brisk_model::{EntityName, EntityPath, FullyQualifiedName, Identity, StatusCode as Outcome};
use serde_json::{Map, Value};

use crate::Controller;
use crate::auth::basic_credentials;
use crate::error::{ApiError, ApiResult, error_response};
use crate::extract::{QueryMap, percent_decode};
use crate::invocation::{Invocation, RESERVED_PARAMS};
use crate::middleware::{ACTIVATION_ID, ActionResponse};

const WAIT: Duration = Duration::from_secs(60);
const RESERVED: &[&str] = &[
    "__ow_method",
    "__ow_headers",
    "__ow_path",
    "__ow_user",
    "__ow_body",
    "__ow_query",
];
const DEFAULT_ALLOW_HEADERS: &str =
    "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    Json,
    Html,
    Svg,
    Text,
}

fn split_extension(action: &str) -> (&str, Mode) {
    for (ext, mode) in [
        (".http", Mode::Http),
        (".json", Mode::Json),
        (".html", Mode::Html),
        (".svg", Mode::Svg),
        (".text", Mode::Text),
    ] {
        if let Some(stem) = action.strip_suffix(ext) {
            return (stem, mode);
        }
    }
    (action, Mode::Http)
}

pub async fn handle(
    State(state): State<Arc<Controller>>,
    Path((ns, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    axum::Extension(tid): axum::Extension<crate::middleware::TransactionId>,
    body: Bytes,
) -> Response {
    match serve(
        &state, &ns, &rest, method, &headers, raw_query, body, &tid.0,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            add_cors(&mut r, &headers);
            r
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &Arc<Controller>,
    ns: &str,
    rest: &str,
    method: Method,
    headers: &HeaderMap,
    raw_query: Option<String>,
    body: Bytes,
    tid: &str,
) -> ApiResult<Response> {
    let mut segs = rest.splitn(3, '/');
    let (Some(pkg), Some(action)) = (segs.next(), segs.next()) else {
        return Err(ApiError::not_found());
    };
    let extra = segs.next().map(|p| format!("/{p}")).unwrap_or_default();
    let (action, mode) = split_extension(action);
    let name_ok = |s: &str| EntityName::new(s).map_err(|_| ApiError::not_found());
    let namespace = EntityName::namespace(ns).map_err(|_| ApiError::not_found())?;
    let name = name_ok(action)?;
    let path = if pkg == "default" {
        EntityPath::root(namespace.clone())
    } else {
        EntityPath::in_package(namespace.clone(), name_ok(pkg)?)
    };
    let owner = state
        .auth
        .owner_of(namespace.as_str())
        .await?
        .ok_or_else(ApiError::not_found)?;
    let fqn = FullyQualifiedName::new(path, name);
    let resolved = state
        .resolve_action(&fqn)
        .await
        .map_err(|_| ApiError::not_found())?;
    let annotations = &resolved.action.annotations;
    if !annotations.is_true("web-export") {
        return Err(ApiError::not_found());
    }
    let custom_options = annotations.is_true("web-custom-options");
    if method == Method::OPTIONS && !custom_options {
        let mut r = StatusCode::OK.into_response();
        add_cors(&mut r, headers);
        return Ok(r);
    }
    let caller = match basic_credentials(headers) {
        Ok(Some(key)) => state.auth.verify(&key).await?,
        _ => None,
    };
    check_whisk_auth(
        annotations.get("require-whisk-auth"),
        headers,
        caller.as_deref(),
    )?;
    let max = state.config.limits.payload_size;
    if body.len() > max {
        return Err(ApiError::TooLarge(format!(
            "Request larger than allowed: {} > {max} bytes.",
            body.len()
        )));
    }
    let raw = annotations.is_true("raw-http");
    let fin = annotations.is_truthy("final");
    let params = resolved.merged_params();
    let mut args = Map::new();
    let mut add_user_value = |k: String, v: Value| -> ApiResult<()> {
        if !raw && (RESERVED.contains(&k.as_str()) || (fin && params.get(&k).is_some())) {
            return Err(ApiError::bad(RESERVED_PARAMS));
        }
        args.insert(k, v);
        Ok(())
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if raw {
        args.insert(
            "__ow_query".into(),
            Value::from(raw_query.clone().unwrap_or_default()),
        );
        let b = if body.is_empty() {
            String::new()
        } else if is_text_mime(&mime) && !is_json_mime(&mime) {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            base64::engine::general_purpose::STANDARD.encode(&body)
        };
        args.insert("__ow_body".into(), Value::from(b));
    } else {
        for (k, v) in QueryMap::parse(raw_query.as_deref()).into_last_values() {
            add_user_value(k, Value::from(v))?;
        }
        if !body.is_empty() {
            if is_json_mime(&mime) {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Object(m)) => {
                        for (k, v) in m {
                            add_user_value(k, v)?;
                        }
                    }
                    Ok(other) => {
                        args.insert("__ow_body".into(), other);
                    }
                    Err(e) => {
                        return Err(ApiError::bad(format!(
                            "The request content was malformed:\n{e}"
                        )));
                    }
                }
            } else if mime == "application/x-www-form-urlencoded" {
                let text = String::from_utf8_lossy(&body);
                for pair in text.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    add_user_value(percent_decode(k), Value::from(percent_decode(v)))?;
                }
            } else if is_text_mime(&mime) {
                args.insert(
                    "__ow_body".into(),
                    Value::from(String::from_utf8_lossy(&body)),
                );
            } else {
                let b = base64::engine::general_purpose::STANDARD.encode(&body);
                args.insert("__ow_body".into(), Value::from(b));
            }
        }
    }
    args.insert(
        "__ow_method".into(),
        Value::from(method.as_str().to_ascii_lowercase()),
    );
    args.insert("__ow_headers".into(), headers_json(headers, &content_type));
    args.insert("__ow_path".into(), Value::from(extra));
    if let Some(c) = &caller {
        args.insert("__ow_user".into(), Value::from(c.namespace.as_str()));
    }
    let inv = Invocation::prepare(state, &owner, resolved, args, tid)?;
    let id = inv.activation_id;
    let activation = match tokio::time::timeout(WAIT, state.start(inv)).await {
        Ok(a) => a,
        _ => {
            let mut r = error_response(StatusCode::ACCEPTED, "Response not yet ready.".into());
            set_header(&mut r, ACTIVATION_ID, id.as_str());
            return Ok(r);
        }
    };
    let result = activation.response.result.clone().unwrap_or(Value::Null);
    let value = match activation.response.status_code {
        Outcome::Success => result,
        Outcome::ApplicationError => result.get("error").cloned().unwrap_or(Value::Null),
        _ => return Err(ApiError::bad("There was an error processing your request.")),
    };
    let mut r = render(mode, value)?;
    r.extensions_mut().insert(ActionResponse);
    set_header(&mut r, ACTIVATION_ID, activation.activation_id.as_str());
    if !custom_options {
        add_cors(&mut r, headers);
    }
    Ok(r)
}

/// `require-whisk-auth`: `true` needs valid credentials; a string or number must match the
/// `X-Require-Whisk-Auth` header; `false` or absent needs nothing.
fn check_whisk_auth(
    required: Option<&Value>,
    headers: &HeaderMap,
    caller: Option<&Identity>,
) -> ApiResult<()> {
    let denied = || ApiError::Unauthorized(crate::error::AUTH_INVALID);
    match required {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => caller.map(|_| ()).ok_or_else(denied),
        Some(v @ (Value::String(_) | Value::Number(_))) => {
            let want = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let got = headers
                .get("x-require-whisk-auth")
                .and_then(|h| h.to_str().ok());
            if got == Some(want.as_str()) {
                Ok(())
            } else {
                Err(denied())
            }
        }
        Some(_) => Err(denied()),
    }
}

fn headers_json(headers: &HeaderMap, content_type: &str) -> Value {
    let mut m = Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            m.insert(k.as_str().to_owned(), Value::from(v));
        }
    }
    if !content_type.is_empty() {
        m.insert("content-type".into(), Value::from(content_type));
    }
    Value::Object(m)
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || mime.ends_with("+json")
}

/// Media types whose bodies are text (everything else is treated as binary).
fn is_text_mime(mime: &str) -> bool {
    mime.starts_with("text/")
        || is_json_mime(mime)
        || mime.ends_with("+xml")
        || matches!(
            mime,
            "application/xml" | "application/javascript" | "application/x-www-form-urlencoded"
        )
}

fn set_header(r: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn add_cors(r: &mut Response, req: &HeaderMap) {
    let allow = req
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOW_HEADERS));
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
}

fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn property<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n))
}

fn render(mode: Mode, v: Value) -> ApiResult<Response> {
    match mode {
        Mode::Json => match v {
            Value::Object(_) | Value::Array(_) => {
                Ok(typed(StatusCode::OK, "application/json", v.to_string()))
            }
            _ => Err(ApiError::bad("Response is not valid 'application/json'.")),
        },
        Mode::Html | Mode::Svg => {
            let (names, ct, what): (&[&str], _, _) = if mode == Mode::Html {
                (&["body", "html"], "text/html; charset=UTF-8", "text/html")
            } else {
                (&["body", "svg"], "image/svg+xml", "image/svg+xml")
            };
            let s = match &v {
                Value::String(s) => Some(s.clone()),
                other => property(other, names)
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            s.map(|s| typed(StatusCode::OK, ct, s))
                .ok_or_else(|| ApiError::bad(format!("Response is not valid '{what}'.")))
        }
        Mode::Text => {
            let p = match &v {
                Value::String(_) => Some(&v),
                other => property(other, &["body", "text"]),
            };
            let Some(p) = p else {
                return Err(ApiError::NotFound(
                    "Response does not include requested property.".into(),
                ));
            };
            let text = match p {
                Value::String(s) => s.clone(),
                Value::Object(_) | Value::Array(_) => {
                    serde_json::to_string_pretty(p).unwrap_or_default()
                }
                other => other.to_string(),
            };
            Ok(typed(StatusCode::OK, "text/plain; charset=UTF-8", text))
        }
        Mode::Http => render_http(v),
    }
}

fn invalid_http() -> ApiError {
    ApiError::bad("Response is not valid 'message/http'.")
}

/// The `.http` mode: `{headers, statusCode, body}`.
fn render_http(v: Value) -> ApiResult<Response> {
    let Value::Object(obj) = v else {
        return Err(invalid_http());
    };
    let mut headers = HeaderMap::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, val) in h {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid_http())?;
                let values: Vec<&Value> = match val {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for one in values {
                    let text = match one {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => one.to_string(),
                        _ => return Err(invalid_http()),
                    };
                    let hv = HeaderValue::from_str(&text).map_err(|_| invalid_http())?;
                    headers.append(name.clone(), hv);
                }
            }
        }
        Some(_) => return Err(invalid_http()),
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let body: Vec<u8> = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => match &declared {
            None => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=UTF-8"),
                );
                s.clone().into_bytes()
            }
            Some(m) if m.is_empty() || m.split('/').count() != 2 => {
                return Err(ApiError::bad(
                    "Response did not specify a known content-type.",
                ));
            }
            Some(m) if !is_text_mime(m) => base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| invalid_http())?,
            Some(m) if is_json_mime(m) => {
                let decoded = brisk_model::exec::is_binary_code(s)
                    .then(|| {
                        base64::engine::general_purpose::STANDARD
                            .decode(s.trim())
                            .ok()
                    })
                    .flatten()
                    .filter(|b| serde_json::from_slice::<Value>(b).is_ok());
                decoded.unwrap_or_else(|| s.clone().into_bytes())
            }
            Some(_) => s.clone().into_bytes(),
        },
        Some(other) => {
            match &declared {
                None => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                Some(m) if is_json_mime(m) => {}
                Some(_) => {
                    return Err(ApiError::bad(
                        "Response type in header did not match generated content type.",
                    ));
                }
            }
            other.to_string().into_bytes()
        }
    };
    let status = match obj.get("statusCode") {
        None | Some(Value::Null) => {
            if body.is_empty() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            }
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(invalid_http)?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .ok()
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(invalid_http)?,
        Some(_) => return Err(invalid_http()),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn body_of(r: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn http_mode_maps_status_headers_and_bodies() {
        let (s, h, b) = body_of(
            render_http(
                json!({"statusCode": 201, "headers": {"x-a": ["1", 2]}, "body": "<p>hi</p>"}),
            )
            .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=UTF-8");
        assert_eq!(b, b"<p>hi</p>");

        let (s, h, b) = body_of(render_http(json!({"body": {"a": 1}})).unwrap()).await;
        assert_eq!(
            (s, h[header::CONTENT_TYPE].to_str().unwrap()),
            (StatusCode::OK, "application/json")
        );
        assert_eq!(b, br#"{"a":1}"#);

        let png = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]);
        let (_, _, b) = body_of(
            render_http(json!({"headers": {"content-type": "image/png"}, "body": png})).unwrap(),
        )
        .await;
        assert_eq!(b, vec![0u8, 1, 2, 255]);

        let (s, _, b) = body_of(render_http(json!({})).unwrap()).await;
        assert_eq!((s, b.len()), (StatusCode::NO_CONTENT, 0));

        assert!(render_http(json!("x")).is_err());
        assert!(
            render_http(json!({"headers": {"content-type": "text/plain"}, "body": {"a": 1}}))
                .is_err()
        );
        assert!(render_http(json!({"statusCode": "abc"})).is_err());
    }

    #[tokio::test]
    async fn other_modes() {
        let (_, h, b) = body_of(render(Mode::Text, json!({"text": 42})).unwrap()).await;
        assert!(
            h[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(b, b"42");
        assert!(render(Mode::Text, json!({"nothing": 1})).is_err());
        assert!(render(Mode::Json, json!("s")).is_err());
        let (_, _, b) = body_of(render(Mode::Html, json!({"html": "<b>x</b>"})).unwrap()).await;
        assert_eq!(b, b"<b>x</b>");
        assert_eq!(split_extension("a.json"), ("a", Mode::Json));
        assert_eq!(split_extension("a.b"), ("a.b", Mode::Http));
    }
}
