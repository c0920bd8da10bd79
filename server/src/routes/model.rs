//! `GET /api/model`: what a page needs to make latents for this server; `GET /api/weights/...`: the audio
//! encoder's weights for pages that encode in the browser; `GET /model/notice`: what the served weights were
//! trained on, for people.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use s2v_models::default_model;
use s2v_shared::wire::{ModelInfo, ServedModel};

use crate::SharedState;
use crate::error::ApiError;
use crate::generators::Serving;

pub const DATA_NOTICE_PATH: &str = "/model/notice";

/// The page of the data behind a model's weights, where this server knows it. Weights given on the command
/// line or announced by a worker come without one: their owner knows what trained them. The embedded notice
/// is rendered once.
fn data_notice_of(model: &ModelInfo) -> Option<&'static str> {
    static DEFAULT_MODEL_PAGE: LazyLock<String> =
        LazyLock::new(|| notice_page(default_model::DATA_NOTICE));
    (model.id == default_model::MODEL_ID).then(|| DEFAULT_MODEL_PAGE.as_str())
}

fn served_generator(state: &SharedState) -> Result<Serving, ApiError> {
    state
        .generators
        .as_ref()
        .and_then(|g| g.serving())
        .ok_or_else(|| ApiError::unavailable("no generator worker is running"))
}

pub async fn served_model(State(state): State<SharedState>) -> Result<Json<ServedModel>, ApiError> {
    let serving = served_generator(&state)?;
    // Weights whose latents the generator cannot take are of no use to a page.
    let audio_encoder = state
        .audio_encoder_weights
        .as_ref()
        .filter(|weights| weights.latent_length == serving.feature_dim)
        .map(|weights| weights.url());
    let data_notice = data_notice_of(&serving.model).map(|_| DATA_NOTICE_PATH.to_string());
    Ok(Json(ServedModel {
        model: serving.model,
        latent_length: serving.feature_dim,
        resolution: serving.resolution,
        kind: serving.kind,
        audio_encoder,
        data_notice,
    }))
}

/// The served weights' data notice (Markdown in the repository) as an HTML page.
pub async fn data_notice(State(state): State<SharedState>) -> Result<Html<&'static str>, ApiError> {
    let serving = served_generator(&state)?;
    let page = data_notice_of(&serving.model).ok_or_else(|| {
        ApiError::not_found("this server does not know what the served model was trained on")
    })?;
    Ok(Html(page))
}

/// A Markdown notice as a page. The credits are quoted from packages, so HTML in them shows as text.
fn notice_page(markdown: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, html};
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        other => other,
    });
    let mut body = String::new();
    html::push_html(&mut body, events);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>The data behind the model · sound2vision</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}}</style>\
         </head><body>{body}<p><a href=\"/\">Back to sound2vision</a></p></body></html>\n"
    )
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

#[cfg(test)]
mod tests {
    use super::notice_page;

    #[test]
    fn markup_quoted_in_a_notice_shows_as_text() {
        let page = notice_page("# Notice\n\nCredit: <script>alert(1)</script> <b>x</b>\n");
        assert!(page.contains("<h1>Notice</h1>"), "{page}");
        assert!(
            !page.contains("<script>") && !page.contains("<b>"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }
}
