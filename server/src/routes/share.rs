//! Share links: `GET /s/<id>` (an HTML page that chat apps can preview) and `GET /api/generations/<id>`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Html;

use crate::SharedState;
use crate::error::ApiError;
use crate::store::GenerationRecord;

async fn load(state: &SharedState, id: String) -> Result<GenerationRecord, ApiError> {
    state
        .store
        .generation(&id)
        .await
        .map_err(|e| ApiError::internal(format!("reading a generation: {e}")))?
        .ok_or_else(|| ApiError::not_found("no such generation"))
}

pub async fn generation_json(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<GenerationRecord>, ApiError> {
    Ok(Json(load(&state, id).await?))
}

pub async fn share_page(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Html<String>, ApiError> {
    let record = load(&state, id).await?;
    // Previews need absolute image addresses; the request's own host (and proxy scheme) gives them.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    let origin = format!("{}://{}", escape(scheme), escape(host));
    let images: String = record
        .images
        .iter()
        .enumerate()
        .map(|(i, hash)| format!("<img src=\"/img/{hash}.png\" alt=\"generated image {}\" width=\"256\" height=\"256\">", i + 1))
        .collect();
    let og_image = record
        .images
        .first()
        .map(|h| format!("{origin}/img/{h}.png"))
        .unwrap_or_default();
    let title = format!(
        "{} image{} from a sound · sound2vision",
        record.count,
        if record.count == 1 { "" } else { "s" }
    );
    let truncation = record
        .truncation
        .map_or("none".to_string(), |t| t.to_string());
    Ok(Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta property="og:title" content="{title}">
<meta property="og:type" content="website">
<meta property="og:image" content="{og_image}">
<meta property="og:url" content="{origin}/s/{id}">
<meta name="twitter:card" content="summary_large_image">
<style>body{{font-family:system-ui,sans-serif;margin:2rem;background:#111;color:#eee}}img{{margin:4px;border-radius:6px}}a{{color:#8cf}}</style>
</head>
<body>
<h1>{title}</h1>
<div>{images}</div>
<p>Model {model} (version {version}) · seed {seed} · truncation {truncation}</p>
<p><a href="/">Make your own from a sound</a></p>
</body>
</html>
"#,
        id = record.id,
        model = escape(&record.model.id),
        version = escape(&record.model.version),
        seed = record.seed,
    )))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
