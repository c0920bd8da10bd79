//! `POST /api/encode-audio` and `POST /api/encode-image`: the request body is the file itself (any
//! `Content-Type`; for audio it hints the container). The answer is `{"latent": [...]}`, the encoder's raw
//! output, which `/api/generate` accepts as it is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use s2v_serving::encoders::EncodeInput;
use s2v_shared::wire::LatentBody;

use crate::SharedState;
use crate::error::ApiError;

pub async fn encode_audio(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LatentBody>, ApiError> {
    let bytes = upload(body)?;
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
) -> Result<Json<LatentBody>, ApiError> {
    let bytes = upload(body)?;
    encode(&state, EncodeInput::Image { bytes }).await
}

fn upload(body: Result<Bytes, BytesRejection>) -> Result<Vec<u8>, ApiError> {
    let bytes = body?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the upload is empty"));
    }
    Ok(bytes.to_vec())
}

async fn encode(state: &SharedState, input: EncodeInput) -> Result<Json<LatentBody>, ApiError> {
    let encoders = state
        .encoders
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no encoders are loaded on this server"))?;
    let latent = encoders.encode(input).await?;
    Ok(Json(LatentBody { latent }))
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
