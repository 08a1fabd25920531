//! Request parsing with OpenWhisk's error texts: JSON bodies, query parameters, list options.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// Query parameters in request order; a name given twice takes its last value. A list, not a
/// hash map: a query holds a handful of parameters, and every invoke parses one.
#[derive(Debug, Default, Clone)]
pub struct QueryMap(Vec<(String, String)>);

impl QueryMap {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(raw.map(form_urlencoded_pairs).unwrap_or_default())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter once, with its last value.
    pub fn into_last_values(self) -> HashMap<String, String> {
        self.0.into_iter().collect()
    }

    /// A boolean parameter (`true/false/yes/no/on/off/1/0`), `default` when absent.
    pub fn flag(&self, k: &str, default: bool) -> ApiResult<bool> {
        let Some(v) = self.get(k) else {
            return Ok(default);
        };
        let is = |words: [&str; 4]| words.iter().any(|w| v.eq_ignore_ascii_case(w));
        if is(["true", "yes", "on", "1"]) {
            Ok(true)
        } else if is(["false", "no", "off", "0"]) {
            Ok(false)
        } else {
            Err(ApiError::bad(format!(
                "The request's query parameter '{k}' was malformed: '{v}' is not a valid Boolean value"
            )))
        }
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs.
fn form_urlencoded_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Common list options.
#[derive(Debug, Clone, Copy)]
pub struct ListOptions {
    pub skip: u64,
    pub limit: u64,
    pub count: bool,
}

pub const DEFAULT_LIST_LIMIT: u64 = 30;
pub const MAX_LIST_LIMIT: u64 = 200;

impl ListOptions {
    pub fn parse(q: &QueryMap, collection: &str) -> ApiResult<Self> {
        let int = |k: &str| -> ApiResult<Option<i64>> {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ApiError::bad(format!(
                            "The value '{v}' is not an integer for {collection}."
                        ))
                    })
                })
                .transpose()
        };
        let limit = match int("limit")? {
            None => DEFAULT_LIST_LIMIT,
            Some(0) => MAX_LIST_LIMIT,
            Some(n) if (1..=MAX_LIST_LIMIT as i64).contains(&n) => n as u64,
            Some(n) => {
                return Err(ApiError::bad(format!(
                    "The value '{n}' is not in the range of 0 to {MAX_LIST_LIMIT} for {collection}."
                )));
            }
        };
        let skip = match int("skip")? {
            None => 0,
            Some(n) if n >= 0 => n as u64,
            Some(n) => {
                return Err(ApiError::bad(format!(
                    "The value '{n}' is not greater than or equal to 0 for {collection}."
                )));
            }
        };
        Ok(Self {
            skip,
            limit,
            count: q.flag("count", false)?,
        })
    }
}

/// Whether the request declares a JSON body.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// Parses a JSON body. Empty bodies yield `None` whatever the content type; a non-empty body
/// must be declared `application/json` (415 otherwise), be a JSON object and parse into `T`
/// (400 otherwise). Every body OpenWhisk accepts is an object; serde alone would also read a
/// struct from an array.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> ApiResult<Option<T>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let malformed = |e: &dyn std::fmt::Display| {
        ApiError::bad(format!("The request content was malformed:\n{e}"))
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if !value.is_object() {
        return Err(malformed(&"expected a JSON object"));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| malformed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_follow_openwhisk_ranges() {
        let q = |s: &str| QueryMap::parse(Some(s));
        let o = ListOptions::parse(&q(""), "actions").unwrap();
        assert_eq!((o.limit, o.skip, o.count), (30, 0, false));
        assert_eq!(
            ListOptions::parse(&q("limit=0"), "actions").unwrap().limit,
            200
        );
        assert_eq!(
            ListOptions::parse(&q("limit=201"), "actions")
                .unwrap_err()
                .to_string(),
            "The value '201' is not in the range of 0 to 200 for actions."
        );
        assert_eq!(
            ListOptions::parse(&q("limit=x"), "rules")
                .unwrap_err()
                .to_string(),
            "The value 'x' is not an integer for rules."
        );
        assert!(ListOptions::parse(&q("skip=-1"), "rules").is_err());
        assert!(ListOptions::parse(&q("count=yes"), "rules").unwrap().count);
    }

    #[test]
    fn query_parameters_take_their_last_value() {
        let q = QueryMap::parse(Some("blocking=true&result=YES&x=1&x=2&flag=maybe&&empty"));
        assert!(q.flag("blocking", false).unwrap());
        assert!(q.flag("result", false).unwrap());
        assert!(
            !QueryMap::parse(Some("result=Off"))
                .flag("result", true)
                .unwrap()
        );
        assert!(q.flag("absent", true).unwrap());
        assert_eq!(q.get("x"), Some("2"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(
            q.flag("flag", false).unwrap_err().to_string(),
            "The request's query parameter 'flag' was malformed: 'maybe' is not a valid Boolean value"
        );
        let all = q.into_last_values();
        assert_eq!(all.len(), 5);
        assert_eq!(all["x"], "2");
        assert_eq!(QueryMap::parse(None).get("x"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%e2%9d%84"), "❄");
    }
}
