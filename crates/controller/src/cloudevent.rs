//! CloudEvents accepted as trigger fires, in structured mode (`application/cloudevents+json`)
//! and binary mode (`ce-*` headers), parsed by the CloudEvents SDK. The event's `data` becomes
//! the payload (an object as is; anything else under `data`) and its context attributes are
//! given to the action under `__cloudevent`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use cloudevents::AttributesReader;
use cloudevents::event::Data;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The key under which the event's attributes reach the action.
pub const ATTRIBUTES_KEY: &str = "__cloudevent";

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether the request carries a CloudEvent (either mode).
pub fn is_cloudevent(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
        || content_type(headers).starts_with("application/cloudevents")
}

/// Turns a CloudEvent request into a trigger payload.
pub fn to_payload(headers: &HeaderMap, body: &[u8]) -> ApiResult<Map<String, Value>> {
    if content_type(headers).starts_with("application/cloudevents-batch") {
        return Err(ApiError::bad(
            "The request content was malformed:\nbatched CloudEvents are not supported; send one event per request",
        ));
    }
    let event = cloudevents::binding::http::to_event(headers, body.to_vec()).map_err(|e| {
        ApiError::bad(format!(
            "The request content was malformed:\nnot a valid CloudEvent: {e}"
        ))
    })?;
    let mut attributes = Map::new();
    for (name, value) in event.iter() {
        attributes.insert(name.to_owned(), Value::from(value.to_string()));
    }
    if let Some(ct) = event.datacontenttype() {
        attributes.insert("datacontenttype".into(), Value::from(ct));
    }
    let mut payload = match event.data() {
        None => Map::new(),
        Some(Data::Json(Value::Object(m))) => m.clone(),
        Some(Data::Json(other)) => single("data", other.clone()),
        Some(Data::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) if is_json(event.datacontenttype()) => m,
            _ => single("data", Value::from(s.as_str())),
        },
        Some(Data::Binary(b)) => match serde_json::from_slice::<Value>(b) {
            Ok(Value::Object(m)) if is_json(event.datacontenttype()) => m,
            _ if is_text(event.datacontenttype()) && std::str::from_utf8(b).is_ok() => {
                single("data", Value::from(String::from_utf8_lossy(b).into_owned()))
            }
            _ => single(
                "data",
                Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        },
    };
    payload.insert(ATTRIBUTES_KEY.into(), Value::Object(attributes));
    Ok(payload)
}

fn is_json(ct: Option<&str>) -> bool {
    ct.is_none_or(|c| {
        let m = c.split(';').next().unwrap_or("").trim();
        m == "application/json" || m.ends_with("+json")
    })
}

fn is_text(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.trim_start().starts_with("text/"))
}

fn single(k: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(k.to_owned(), v);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn structured_mode() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t.created",
                          "datacontenttype": "application/json", "data": {"k": "v"}});
        let p = to_payload(&h, body.to_string().as_bytes()).unwrap();
        assert_eq!(p["k"], "v");
        assert_eq!(p[ATTRIBUTES_KEY]["type"], "t.created");
        assert_eq!(p[ATTRIBUTES_KEY]["source"], "/s");
        assert!(is_cloudevent(&h));
    }

    #[test]
    fn binary_mode() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "42"),
            ("ce-source", "urn:x"),
            ("ce-type", "t.b"),
            ("ce-myext", "hello"),
            ("content-type", "application/json"),
        ]);
        let p = to_payload(&h, br#"{"n": 1}"#).unwrap();
        assert_eq!(p["n"], 1);
        assert_eq!(p[ATTRIBUTES_KEY]["id"], "42");
        assert_eq!(p[ATTRIBUTES_KEY]["myext"], "hello");
        let text = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "urn:x"),
            ("ce-type", "t"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            to_payload(&text, b"plain words").unwrap()["data"],
            "plain words"
        );
    }

    #[test]
    fn malformed_events_are_rejected() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        assert!(to_payload(&h, br#"{"id": "1"}"#).is_err());
        assert!(to_payload(&h, b"not json").is_err());
        let b = headers(&[("ce-specversion", "1.0")]);
        assert!(to_payload(&b, b"{}").is_err());
        let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
        assert!(to_payload(&batch, b"[]").is_err());
    }
}
