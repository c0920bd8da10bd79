//! `GET /img/<sha256>.png`: content-addressed, so cacheable forever.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::SharedState;
use crate::error::ApiError;

pub async fn image(
    State(state): State<SharedState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = file.strip_suffix(".png").unwrap_or("");
    let etag = format!("\"{hash}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let bytes = state
        .store
        .image(hash)
        .await
        .map_err(|e| ApiError::internal(format!("reading an image: {e}")))?
        .ok_or_else(|| ApiError::not_found("no such image"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (header::ETAG, etag),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
