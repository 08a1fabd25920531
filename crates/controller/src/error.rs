//! Every failure a client can see, and the one place that turns it into HTTP.
//!
//! Handlers return `ApiError`; its `IntoResponse` only records the status and message. The
//! request middleware (`crate::middleware`) writes the OpenWhisk envelope
//! `{"error": "...", "code": "<request id>"}`, because only it knows the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use brisk_model::ModelError;

pub const NOT_FOUND: &str = "The requested resource does not exist.";
pub const NOT_AUTHORIZED: &str =
    "The supplied authentication is not authorized to access this resource.";
pub const AUTH_MISSING: &str =
    "The resource requires authentication, which was not supplied with the request";
pub const AUTH_INVALID: &str = "The supplied authentication is invalid";
pub const CONFLICT_COLLECTION: &str = "Resource by this name exists but is not in this collection.";
pub const CONCURRENT_MODIFICATION: &str = "Concurrent modification to resource detected.";
pub const EXISTS: &str = "resource already exists";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("The request's Content-Type is not supported. Expected:\napplication/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError::NotFound(NOT_FOUND.into())
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub fn forbidden_resource(resource: &str) -> Self {
        ApiError::Forbidden(format!(
            "The supplied authentication is not authorized to access '{resource}'."
        ))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The message an error response carries to the middleware, which renders the envelope.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

/// Builds an error response for `status` with `message`; the middleware adds the body.
pub fn error_response(status: StatusCode, message: String) -> Response {
    let mut res = status.into_response();
    res.extensions_mut().insert(ErrorMessage(message));
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut res = error_response(status, self.to_string());
        match &self {
            ApiError::Unauthorized(_) => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"OpenWhisk secure realm\""),
                );
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        res
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<brisk_store::Error> for ApiError {
    fn from(e: brisk_store::Error) -> Self {
        use brisk_store::Error as E;
        match e {
            E::Exists => ApiError::Conflict(EXISTS.into()),
            E::Conflict => ApiError::Conflict(CONCURRENT_MODIFICATION.into()),
            E::NotFound => ApiError::not_found(),
            other => ApiError::Internal(format!("store failure: {other}")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
