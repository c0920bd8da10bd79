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

use crate::error::ApiError;
use crate::store::{GenerationRecord, new_generation_id};
use crate::{ModelInfo, SharedState};

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
    let generators = state.generators.as_ref().ok_or_else(|| {
        state
            .metrics
            .errors
            .with_label_values(&["unavailable"])
            .inc();
        ApiError::unavailable("no generator worker is running")
    })?;
    let (model, receiver) = generators.submit(request.clone()).await.map_err(|e| {
        let error = match e {
            SubmitError::QueueFull => {
                ApiError::busy("the generation queue is full; try again shortly")
            }
            SubmitError::Stopped => ApiError::unavailable("no generator worker is running"),
            SubmitError::Unavailable(detail) => ApiError::unavailable(detail),
            SubmitError::Invalid(detail) => ApiError::bad_request(detail),
        };
        state.metrics.errors.with_label_values(&[error.error]).inc();
        error
    })?;
    Ok(Sse::new(image_events(state, request, model, receiver)).keep_alive(KeepAlive::default()))
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
    if let Some(model) = &body.model {
        let serving = state
            .generators
            .as_ref()
            .and_then(|g| g.serving())
            .ok_or_else(|| ApiError::unavailable("no generator worker is running"))?;
        if *model != serving.model.id {
            return Err(ApiError::bad_request(format!(
                "unknown model `{model}`; this server serves `{}`",
                serving.model.id
            )));
        }
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
    model: ModelInfo,
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
    model: ModelInfo,
    receiver: UnboundedReceiver<ImageResult>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let progress = Progress {
        state,
        request,
        model,
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
    let stored = async {
        let png = tokio::task::spawn_blocking(move || {
            s2v_worker::pictures::encode_png(&image.rgb, image.width, image.height)
        })
        .await
        .map_err(|e| format!("encoding task failed: {e}"))??;
        p.state
            .store
            .put_image(png)
            .await
            .map_err(|e| format!("storing an image: {e}"))
    }
    .await;
    match stored {
        Ok(hash) => {
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
        Err(detail) => fail(p, detail),
    }
}

async fn finish(p: &mut Progress) -> Result<Event, String> {
    let record = GenerationRecord {
        id: new_generation_id(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: p.model.clone(),
        seed: p.request.seed,
        count: p.request.count,
        truncation: p.request.truncation,
        images: p.images.clone(),
    };
    p.state
        .store
        .put_generation(&record)
        .await
        .map_err(|e| format!("storing the generation: {e}"))?;
    p.state
        .metrics
        .generation_seconds
        .observe(p.started.elapsed().as_secs_f64());
    Ok(Event::default()
        .event("done")
        .data(json!({"id": record.id, "share": format!("/s/{}", record.id)}).to_string()))
}
