//! `POST /api/generate`: images streamed as server-sent events as soon as each is encoded; a diffusion
//! model's previews (small JPEGs of the picture it predicts, every few steps) stream before each image.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use s2v_serving::ImageResult;
use s2v_shared::wire::{
    DONE_EVENT, DoneEvent, ERROR_EVENT, GenerateRequest, GenerationRecord, GenerationRequest,
    IMAGE_EVENT, ImageEvent, ModelInfo, ModelKind, PREVIEW_EVENT, PreviewEvent,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::SharedState;
use crate::error::ApiError;
use crate::store::new_generation_id;

pub async fn generate(
    State(state): State<SharedState>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Json(body) = body?;
    let request = validate(&state, body)?;
    let generators = state
        .generators
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no generator worker is running"))?;
    let (model, receiver) = generators.submit(request.clone()).await?;
    Ok(Sse::new(image_events(state, request, model, receiver)).keep_alive(KeepAlive::default()))
}

/// The API's own limits (count, model). The latent and the truncation are checked where they are used, by
/// the runtime's `submit`, whose `Invalid` answers become 400 too.
fn validate(state: &SharedState, body: GenerateRequest) -> Result<GenerationRequest, ApiError> {
    if !(1..=state.limits.max_count).contains(&body.count) {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {}",
            state.limits.max_count
        )));
    }
    let serving = state
        .generators
        .as_ref()
        .and_then(|g| g.serving())
        .ok_or_else(|| ApiError::unavailable("no generator worker is running"))?;
    if let Some(model) = &body.model
        && *model != serving.model.id
    {
        return Err(ApiError::bad_request(format!(
            "unknown model `{model}`; this server serves `{}`",
            serving.model.id
        )));
    }
    // A diffusion model's defaults are written into the request, so that its record says what was used.
    let (steps, guidance) = match serving.kind {
        ModelKind::Diffusion(controls) => (
            Some(body.steps.unwrap_or(controls.steps)),
            Some(body.guidance.unwrap_or(controls.guidance)),
        ),
        ModelKind::Gan => (body.steps, body.guidance),
    };
    Ok(GenerationRequest {
        latent: body.latent,
        seed: body.seed.unwrap_or_else(rand::random),
        count: body.count,
        truncation: body.truncation,
        steps,
        guidance,
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

/// The `error` event that ends a stream: the response has started, so the error is counted here, not by
/// the middleware.
fn fail(p: &mut Progress, error: ApiError) -> Event {
    p.finished = true;
    p.state.metrics.count_error(error.kind);
    json_event(ERROR_EVENT, &error.body())
}

fn json_event(name: &str, payload: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(payload)
        .unwrap_or_else(|_| Event::default().event(ERROR_EVENT))
}

async fn next_event(p: &mut Progress) -> Event {
    if p.images.len() == p.request.count {
        p.finished = true;
        return match finish(p).await {
            Ok(event) => event,
            Err(error) => fail(p, error),
        };
    }
    let image = match p.receiver.recv().await {
        Some(Ok(image)) => image,
        Some(Err(error)) => return fail(p, error.into()),
        None => return fail(p, s2v_serving::GenerationError::Stopped.into()),
    };
    if let Some(step) = image.preview {
        return match preview_event(image, step).await {
            Ok(event) => event,
            Err(error) => fail(p, error),
        };
    }
    let stored = async {
        let png = tokio::task::spawn_blocking(move || {
            s2v_serving::pictures::encode_png(&image.rgb, image.width, image.height)
        })
        .await
        .map_err(|e| ApiError::internal(format!("encoding task failed: {e}")))?
        .map_err(ApiError::internal)?;
        p.state
            .store
            .put_image(png)
            .await
            .map_err(|e| ApiError::internal(format!("storing an image: {e}")))
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
            json_event(IMAGE_EVENT, &ImageEvent { index, url })
        }
        Err(error) => fail(p, error),
    }
}

/// A preview as a `data:` URL: it is seen for a moment, so it is not stored.
async fn preview_event(
    image: s2v_serving::GeneratedImage,
    step: s2v_serving::PreviewStep,
) -> Result<Event, ApiError> {
    use base64::Engine;
    let index = image.index;
    let jpeg = tokio::task::spawn_blocking(move || {
        s2v_serving::pictures::encode_jpeg(&image.rgb, image.width, image.height)
    })
    .await
    .map_err(|e| ApiError::internal(format!("encoding task failed: {e}")))?
    .map_err(ApiError::internal)?;
    let jpeg = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    );
    Ok(json_event(
        PREVIEW_EVENT,
        &PreviewEvent {
            index,
            step: step.step,
            steps: step.steps,
            jpeg,
        },
    ))
}

async fn finish(p: &mut Progress) -> Result<Event, ApiError> {
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
        steps: p.request.steps,
        guidance: p.request.guidance,
        images: p.images.clone(),
    };
    p.state
        .store
        .put_generation(&record)
        .await
        .map_err(|e| ApiError::internal(format!("storing the generation: {e}")))?;
    p.state
        .metrics
        .generation_seconds
        .observe(p.started.elapsed().as_secs_f64());
    Ok(json_event(
        DONE_EVENT,
        &DoneEvent {
            share: format!("/s/{}", record.id),
            id: record.id,
        },
    ))
}
