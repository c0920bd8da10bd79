//! `GET /api/model`: what a page needs to make latents for this server; `GET /api/weights/...`: the audio
//! encoder's weights for pages that encode in the browser.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use s2v_shared::wire::ServedModel;

use crate::SharedState;
use crate::error::ApiError;

pub async fn served_model(State(state): State<SharedState>) -> Result<Json<ServedModel>, ApiError> {
    let serving = state
        .generators
        .as_ref()
        .and_then(|g| g.serving())
        .ok_or_else(|| ApiError::unavailable("no generator worker is running"))?;
    // Weights whose latents the generator cannot take are of no use to a page.
    let audio_encoder = state
        .audio_encoder_weights
        .as_ref()
        .filter(|weights| weights.latent_length == serving.feature_dim)
        .map(|weights| weights.url());
    Ok(Json(ServedModel {
        model: serving.model,
        latent_length: serving.feature_dim,
        resolution: serving.resolution,
        audio_encoder,
    }))
}

/// The weights under their version: cached by the browser forever, so a second visit downloads nothing.
pub async fn audio_encoder_weights(
    State(state): State<SharedState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let weights = state
        .audio_encoder_weights
        .as_ref()
        .filter(|w| file.strip_suffix(".safetensors") == Some(w.version.as_str()))
        .ok_or_else(|| ApiError::not_found("no such weights on this server"))?;
    let etag = format!("\"{}\"", weights.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::ETAG, etag),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_string(),
            ),
        ],
        weights.bytes.clone(),
    )
        .into_response())
}
