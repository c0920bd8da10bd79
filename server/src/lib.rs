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
    /// The audio encoder's weights for pages that encode in the browser, when this server has one.
    pub audio_encoder_weights: Option<EncoderWeights>,
    pub store: store::Store,
    pub limits: Limits,
    pub metrics: routes::metrics::Metrics,
    /// The built page, served at `/` when present.
    pub page: Option<routes::Page>,
}

/// A network's weights as a page downloads them: the project's f16 safetensors format, under a version (the
/// start of the bytes' SHA-256) that is part of the address, so that browsers may cache them forever.
pub struct EncoderWeights {
    pub bytes: bytes::Bytes,
    pub version: String,
    /// The length of the latents these weights make.
    pub latent_length: usize,
}

impl EncoderWeights {
    pub fn new(bytes: Vec<u8>, latent_length: usize) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            version: hex::encode(&Sha256::digest(&bytes)[..8]),
            bytes: bytes.into(),
            latent_length,
        }
    }

    /// Where the page fetches them.
    pub fn url(&self) -> String {
        format!("/api/weights/audio-encoder/{}.safetensors", self.version)
    }
}

pub type SharedState = Arc<AppState>;

pub use routes::router;
