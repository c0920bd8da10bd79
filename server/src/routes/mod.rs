//! The HTTP routes.

pub mod encode;
pub mod generate;
pub mod images;
pub mod metrics;
pub mod model;
pub mod openapi;
mod page;
pub use page::Page;
pub mod share;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

use crate::SharedState;
use crate::error::{ApiError, ErrorKind};

/// The API. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the rate limit is per
/// client address.
pub fn router(state: SharedState) -> Router {
    // The page (trunk's dist/) answers every path the API does not.
    let page = state.page.clone();
    let limits = state.limits;
    let upload_limit = DefaultBodyLimit::max(limits.max_upload_bytes);

    // The routes that cost compute are rate-limited per client: a burst, then one request per period.
    let governor = GovernorConfigBuilder::default()
        .per_millisecond(limits.rate_period_ms.max(1))
        .burst_size(limits.rate_burst.max(1))
        .finish()
        .expect("positive rate limits");
    let costly = Router::new()
        .route("/api/generate", post(generate::generate))
        .route(
            "/api/encode-audio",
            post(encode::encode_audio).layer(upload_limit),
        )
        .route(
            "/api/encode-image",
            post(encode::encode_image).layer(upload_limit),
        )
        .layer(GovernorLayer::new(governor).error_handler(rate_limited));

    let router = Router::new()
        .merge(costly)
        .route("/api/generations/{id}", get(share::generation_json))
        .route("/img/{file}", get(images::image))
        .route("/s/{id}", get(share::share_page))
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/api/model", get(model::served_model))
        .route(model::DATA_NOTICE_PATH, get(model::data_notice))
        .route(
            "/api/weights/audio-encoder/{file}",
            get(model::audio_encoder_weights),
        )
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    page::serve(router, page)
}

/// Counts every error answer by its kind ([`ApiError`] marks its responses), rate limiting's included.
async fn count_errors(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(kind) = response.extensions().get::<ErrorKind>() {
        state.metrics.count_error(*kind);
    }
    response
}

fn rate_limited(error: tower_governor::GovernorError) -> Response {
    match error {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => ApiError {
            retry_after: Some(wait_time.max(1)),
            ..ApiError::busy("too many requests from this client; slow down")
        }
        .into_response(),
        other => ApiError::internal(other.to_string()).into_response(),
    }
}
