//! API errors: JSON `{"error": kind, "detail": sentence}` with the status the kind implies.
//!
//! Every failure on the serving path arrives here as a typed error (`From` conversions below), and every error
//! response carries its [`ErrorKind`] in its extensions, where one middleware counts it
//! (`routes::count_errors`).

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use s2v_serving::encoders::EncodeError;
use s2v_serving::{GenerationError, SubmitError};
use s2v_shared::wire::ErrorBody;

/// What went wrong, as clients and the error metric see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
    /// An upload that is not a file of its kind.
    Undecodable,
    /// Try again after `Retry-After` seconds: a queue is full, or a client is sending too fast.
    Busy,
    /// No generator worker or encoder is there to serve.
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Undecodable => "undecodable",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType | Self::Undecodable => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` an error of this kind gets unless it knows better.
    const fn default_retry_after(self) -> Option<u64> {
        match self {
            Self::Busy => Some(1),
            Self::Unavailable => Some(5),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: kind.default_retry_after(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, detail)
    }

    pub fn busy(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, detail)
    }

    /// The JSON body, also the payload of a stream's `error` event.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind.as_str().to_string(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.body())
            .unwrap_or_else(|_| r#"{"error":"internal","detail":""}"#.into());
        let mut response = (
            self.kind.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self.kind);
        response
    }
}

/// The kind a rejected body's status says (axum answers 400, 413, 415 or 422).
fn rejection_kind(status: StatusCode) -> ErrorKind {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
        // A body that parses but does not fit the schema (axum says 422) is a bad request to this API.
        _ => ErrorKind::BadRequest,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection_kind(rejection.status()), rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::new(rejection_kind(rejection.status()), rejection.body_text())
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::QueueFull => Self::busy("the generation queue is full; try again shortly"),
            SubmitError::Stopped | SubmitError::Broker(_) => Self::unavailable(error.to_string()),
            SubmitError::Invalid(why) => Self::bad_request(why.to_string()),
        }
    }
}

impl From<EncodeError> for ApiError {
    fn from(error: EncodeError) -> Self {
        match error {
            EncodeError::Undecodable(detail) => Self::new(ErrorKind::Undecodable, detail),
            EncodeError::QueueFull => Self::busy("the encoder queue is full; try again shortly"),
            EncodeError::NotLoaded(_) | EncodeError::Stopped => {
                Self::unavailable(error.to_string())
            }
            EncodeError::Internal(detail) => Self::internal(detail),
        }
    }
}

impl From<GenerationError> for ApiError {
    fn from(error: GenerationError) -> Self {
        match error {
            GenerationError::Stopped
            | GenerationError::Silent(_)
            | GenerationError::Disconnected => Self::unavailable(error.to_string()),
            GenerationError::Backend(_)
            | GenerationError::Worker(_)
            | GenerationError::Malformed(_) => Self::internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s2v_serving::InvalidRequest;

    #[test]
    fn each_kind_has_its_status_and_retry_after() {
        let response = ApiError::from(SubmitError::QueueFull).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.extensions().get(), Some(&ErrorKind::Busy));
        let invalid = ApiError::from(SubmitError::Invalid(InvalidRequest::NoImages));
        assert_eq!(invalid.kind, ErrorKind::BadRequest);
        assert_eq!(invalid.detail, "count must be at least 1");
        let undecodable = ApiError::from(EncodeError::Undecodable("not audio".into()));
        assert_eq!(
            undecodable.kind.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(undecodable.body().error, "undecodable");
        assert_eq!(
            ApiError::from(GenerationError::Silent(120)).kind,
            ErrorKind::Unavailable
        );
    }
}
