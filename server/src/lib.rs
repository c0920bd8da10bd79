//! The generation service: an axum HTTP API in front of the generator runtime (`s2v-serving`). The browser
//! sends a latent and receives the images as server-sent events as soon as each is encoded; every generation
//! is recorded so that its share link keeps working.

pub mod error;
pub mod generators;
pub mod routes;
pub mod store;

use std::sync::Arc;

use s2v_serving::encoders::EncoderService;

use generators::Generators;

/// Limits the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_count: usize,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Uploads to the encoders larger than this are refused with 413.
    pub max_upload_bytes: usize,
    /// Requests to the costly routes a client may send at once...
    pub rate_burst: u32,
    /// ...and then one per this many milliseconds; faster ones get 429.
    pub rate_period_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_count: 16,
            max_body_bytes: 256 * 1024,
            max_upload_bytes: 10 * 1024 * 1024,
            rate_burst: 30,
            rate_period_ms: 100,
        }
    }
}

/// Everything a handler needs.
pub struct AppState {
    pub generators: Option<Generators>,
    pub encoders: Option<EncoderService>,
    pub store: store::Store,
    pub limits: Limits,
    pub metrics: routes::metrics::Metrics,
    /// The built page (trunk's `dist/`), served at `/` when present.
    pub page_dir: Option<std::path::PathBuf>,
}

pub type SharedState = Arc<AppState>;

pub use routes::router;
