//! `POST /api/encode-audio` and `POST /api/encode-image`: the request body is the file itself (any
//! `Content-Type`; for audio it hints the container). The answer is `{"latent": [2048 numbers]}`, the
//! encoder's raw output, which `/api/generate` accepts as it is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use s2v_worker::encoders::{EncodeError, EncodeInput};
use serde_json::{Value, json};

use crate::SharedState;
use crate::error::ApiError;

pub async fn encode_audio(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let bytes = upload(&state, body)?;
    let extension_hint = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(audio_extension)
        .map(str::to_string);
    encode(
        &state,
        EncodeInput::Audio {
            bytes,
            extension_hint,
        },
    )
    .await
}

pub async fn encode_image(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let bytes = upload(&state, body)?;
    encode(&state, EncodeInput::Image { bytes }).await
}

fn upload(state: &SharedState, body: Result<Bytes, BytesRejection>) -> Result<Vec<u8>, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        state.metrics.errors.with_label_values(&[error]).inc();
        ApiError::new(status, error, rejection.body_text())
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the upload is empty"));
    }
    Ok(bytes.to_vec())
}

async fn encode(state: &SharedState, input: EncodeInput) -> Result<Json<Value>, ApiError> {
    let encoders = state
        .encoders
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no encoders are loaded on this server"))?;
    match encoders.encode(input).await {
        Ok(latent) => Ok(Json(json!({ "latent": latent }))),
        Err(e) => {
            let error = match e {
                EncodeError::Undecodable(detail) => {
                    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "undecodable", detail)
                }
                EncodeError::QueueFull => {
                    ApiError::busy("the encoder queue is full; try again shortly")
                }
                EncodeError::NotLoaded(_) | EncodeError::Stopped => {
                    ApiError::unavailable(e.to_string())
                }
                EncodeError::Internal(detail) => ApiError::internal(detail),
            };
            state.metrics.errors.with_label_values(&[error.error]).inc();
            Err(error)
        }
    }
}

/// The container a `Content-Type` names, as a hint for the decoder's probe.
fn audio_extension(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next()?.trim();
    Some(match essence {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/ogg" | "audio/vorbis" | "application/ogg" => "ogg",
        "audio/mpeg" | "audio/mp3" => "mp3",
        _ => return None,
    })
}
