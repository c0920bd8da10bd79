//! The HTTP routes.

pub mod encode;
pub mod generate;
pub mod images;
pub mod metrics;
pub mod openapi;
pub mod share;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::SharedState;

pub fn router(state: SharedState) -> Router {
    // The page (trunk's dist/) answers every path the API does not.
    let page = state.page_dir.clone();
    let body_limit = state.limits.max_body_bytes;
    let upload_limit = state.limits.max_upload_bytes;
    let router = Router::new()
        .route("/api/generate", post(generate::generate))
        .route("/api/generations/{id}", get(share::generation_json))
        .route(
            "/api/encode-audio",
            post(encode::encode_audio).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/encode-image",
            post(encode::encode_image).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/img/{file}", get(images::image))
        .route("/s/{id}", get(share::share_page))
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    match page {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}
