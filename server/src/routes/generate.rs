//! `POST /api/generate`: images streamed as server-sent events as soon as each is encoded.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use s2v_worker::runtime::{GenerationRequest, ImageResult, SubmitError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::SharedState;
use crate::error::ApiError;
use crate::store::{GenerationRecord, new_generation_id};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    pub latent: Vec<f32>,
    pub count: usize,
    pub seed: Option<u64>,
    pub truncation: Option<f32>,
    pub model: Option<String>,
}

pub async fn generate(
    State(state): State<SharedState>,
    body: Result<Json<GenerateBody>, JsonRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Json(body) = body.map_err(|e| {
        state
            .metrics
            .errors
            .with_label_values(&["bad_request"])
            .inc();
        ApiError::from(e)
    })?;
    let request = validate(&state, body)
        .inspect_err(|e| state.metrics.errors.with_label_values(&[e.error]).inc())?;
    let runtime = state
        .runtime
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no generator worker is running"))?;
    let (reply, receiver) = tokio::sync::mpsc::unbounded_channel();
    runtime.submit(request.clone(), reply).map_err(|e| {
        let error = match e {
            SubmitError::QueueFull => {
                ApiError::busy("the generation queue is full; try again shortly")
            }
            SubmitError::Stopped => ApiError::unavailable("the generator worker has stopped"),
            SubmitError::Invalid(detail) => ApiError::bad_request(detail),
        };
        state.metrics.errors.with_label_values(&[error.error]).inc();
        error
    })?;
    Ok(Sse::new(image_events(state, request, receiver)).keep_alive(KeepAlive::default()))
}

/// The API's own limits (count, model). The latent and the truncation are checked where they are used, by
/// the runtime's `submit`, whose `Invalid` answers become 400 too.
fn validate(state: &SharedState, body: GenerateBody) -> Result<GenerationRequest, ApiError> {
    if !(1..=state.limits.max_count).contains(&body.count) {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {}",
            state.limits.max_count
        )));
    }
    if let Some(model) = &body.model
        && *model != state.model.id
    {
        return Err(ApiError::bad_request(format!(
            "unknown model `{model}`; this server serves `{}`",
            state.model.id
        )));
    }
    Ok(GenerationRequest {
        latent: body.latent,
        seed: body.seed.unwrap_or_else(rand::random),
        count: body.count,
        truncation: body.truncation,
    })
}

struct Progress {
    state: SharedState,
    request: GenerationRequest,
    receiver: UnboundedReceiver<ImageResult>,
    images: Vec<String>,
    started: Instant,
    finished: bool,
}

/// One `image` event per image in order, then `done` (or `error`). Dropping the stream (the client left)
/// drops the receiver, and the runtime skips the rest of the request.
fn image_events(
    state: SharedState,
    request: GenerationRequest,
    receiver: UnboundedReceiver<ImageResult>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let progress = Progress {
        state,
        request,
        receiver,
        images: Vec::new(),
        started: Instant::now(),
        finished: false,
    };
    stream::unfold(progress, |mut p| async move {
        if p.finished {
            return None;
        }
        let event = next_event(&mut p).await;
        Some((Ok(event), p))
    })
}

async fn next_event(p: &mut Progress) -> Event {
    let fail = |p: &mut Progress, detail: String| {
        p.finished = true;
        p.state
            .metrics
            .errors
            .with_label_values(&["internal"])
            .inc();
        Event::default()
            .event("error")
            .data(json!({"error": "internal", "detail": detail}).to_string())
    };
    if p.images.len() == p.request.count {
        p.finished = true;
        return match finish(p).await {
            Ok(event) => event,
            Err(detail) => fail(p, detail),
        };
    }
    let image = match p.receiver.recv().await {
        Some(Ok(image)) => image,
        Some(Err(detail)) => return fail(p, detail),
        None => return fail(p, "the generator worker stopped".into()),
    };
    let store_state = p.state.clone();
    let stored = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let png = s2v_worker::pictures::encode_png(&image.rgb, image.width, image.height)?;
        store_state
            .store
            .put_image(&png)
            .map_err(|e| format!("storing an image: {e}"))
    })
    .await;
    match stored {
        Ok(Ok(hash)) => {
            if p.images.is_empty() {
                p.state
                    .metrics
                    .first_image_seconds
                    .observe(p.started.elapsed().as_secs_f64());
            }
            p.state.metrics.images.inc();
            let index = p.images.len();
            let url = format!("/img/{hash}.png");
            p.images.push(hash);
            Event::default()
                .event("image")
                .data(json!({"index": index, "url": url}).to_string())
        }
        Ok(Err(detail)) => fail(p, detail),
        Err(e) => fail(p, format!("encoding task failed: {e}")),
    }
}

async fn finish(p: &mut Progress) -> Result<Event, String> {
    let record = GenerationRecord {
        id: new_generation_id(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: p.state.model.clone(),
        seed: p.request.seed,
        count: p.request.count,
        truncation: p.request.truncation,
        images: p.images.clone(),
    };
    let state = p.state.clone();
    let saved = record.clone();
    tokio::task::spawn_blocking(move || state.store.put_generation(&saved))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("storing the generation: {e}"))?;
    p.state
        .metrics
        .generation_seconds
        .observe(p.started.elapsed().as_secs_f64());
    Ok(Event::default()
        .event("done")
        .data(json!({"id": record.id, "share": format!("/s/{}", record.id)}).to_string()))
}
