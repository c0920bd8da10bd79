//! What the page knows, as signals the views read: the server's model, the encoder, the sounds and controls,
//! and the generation under way.

use std::sync::Arc;

use leptos::prelude::*;
use s2v_shared::encoder_protocol::EncoderBackend;
use s2v_shared::wire::{DiffusionControls, ModelKind, ServedModel};

use crate::history::Recent;

/// A sound to encode: 16 kHz mono, and where its 10 s start.
#[derive(Debug, Clone, PartialEq)]
pub struct Sound {
    pub name: String,
    pub samples: Arc<Vec<f32>>,
    pub start: usize,
}

impl Sound {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / 16_000.0
    }
}

/// A picture mixed in: its name and its feature from the server's image encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub name: String,
    pub feature: Arc<Vec<f32>>,
}

/// Where the browser's encoder stands.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderStatus {
    /// Its wasm is loading.
    Starting,
    /// Fetching the weights.
    Fetching { loaded: u64, total: Option<u64> },
    Ready {
        backend: EncoderBackend,
        /// Threads the network runs on (more than one on the CPU in a cross-origin-isolated page).
        threads: u32,
        seconds: f64,
        from_cache: bool,
        /// Why the CPU runs where WebGPU was wanted.
        no_webgpu: Option<String>,
    },
    /// The browser cannot run it: sounds are encoded on the server.
    Unavailable(String),
}

/// The microphone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Microphone {
    Idle,
    Asking,
    Recording { seconds: f64, peak: f64 },
}

/// The pictures' progress.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Idle,
    Encoding,
    Generating,
    Done,
    /// The server is busy: trying again in this many seconds.
    Waiting(u64),
    Failed(String),
}

/// Every signal of the page, handed to the views by context.
#[derive(Clone, Copy)]
pub struct Studio {
    pub served: RwSignal<Option<ServedModel>>,
    pub server_problem: RwSignal<Option<String>>,
    pub encoder: RwSignal<EncoderStatus>,
    pub encode_on_server: RwSignal<bool>,
    pub first: RwSignal<Option<Sound>>,
    pub first_volume: RwSignal<f64>,
    pub second: RwSignal<Option<Sound>>,
    pub second_volume: RwSignal<f64>,
    pub picture: RwSignal<Option<Picture>>,
    pub lambda: RwSignal<f64>,
    pub count: RwSignal<usize>,
    pub truncate: RwSignal<bool>,
    pub truncation: RwSignal<f64>,
    /// A diffusion model's controls (set to its defaults when the server says which model it serves).
    pub steps: RwSignal<f64>,
    pub guidance: RwSignal<f64>,
    pub seed: RwSignal<u64>,
    /// The sound's latent, before a picture is mixed in.
    pub sound_latent: RwSignal<Option<Arc<Vec<f32>>>>,
    pub spectrogram: RwSignal<Option<Arc<Vec<f32>>>>,
    /// How the last latent was made ("on WebGPU in 0.4 s").
    pub encoded_note: RwSignal<Option<String>>,
    pub images: RwSignal<Vec<String>>,
    /// The latest preview of each picture still denoising (a `data:` URL), by index.
    pub previews: RwSignal<Vec<Option<String>>>,
    pub share: RwSignal<Option<String>>,
    pub progress: RwSignal<Progress>,
    /// A problem with a sound or a picture the visitor gave.
    pub input_problem: RwSignal<Option<String>>,
    pub microphone: RwSignal<Microphone>,
    pub recent: RwSignal<Vec<Recent>>,
}

impl Studio {
    /// The served diffusion model's controls; `None` while a GAN serves (or none yet).
    pub fn diffusion_controls(&self) -> Option<DiffusionControls> {
        self.served
            .with(|served| match served.as_ref().map(|s| s.kind) {
                Some(ModelKind::Diffusion(controls)) => Some(controls),
                _ => None,
            })
    }

    pub fn new() -> Self {
        Self {
            served: RwSignal::new(None),
            server_problem: RwSignal::new(None),
            encoder: RwSignal::new(EncoderStatus::Starting),
            encode_on_server: RwSignal::new(false),
            first: RwSignal::new(None),
            first_volume: RwSignal::new(1.0),
            second: RwSignal::new(None),
            second_volume: RwSignal::new(0.5),
            picture: RwSignal::new(None),
            lambda: RwSignal::new(0.5),
            count: RwSignal::new(4),
            truncate: RwSignal::new(false),
            truncation: RwSignal::new(1.0),
            steps: RwSignal::new(20.0),
            guidance: RwSignal::new(10.0),
            seed: RwSignal::new(new_seed()),
            sound_latent: RwSignal::new(None),
            spectrogram: RwSignal::new(None),
            encoded_note: RwSignal::new(None),
            images: RwSignal::new(Vec::new()),
            previews: RwSignal::new(Vec::new()),
            share: RwSignal::new(None),
            progress: RwSignal::new(Progress::Idle),
            input_problem: RwSignal::new(None),
            microphone: RwSignal::new(Microphone::Idle),
            recent: RwSignal::new(crate::history::load()),
        }
    }

    /// Whether sounds go to the server for their latent: by choice, or because the browser cannot encode.
    pub fn encodes_on_server(&self) -> bool {
        self.encode_on_server.get_untracked()
            || matches!(self.encoder.get_untracked(), EncoderStatus::Unavailable(_))
    }
}

impl Default for Studio {
    fn default() -> Self {
        Self::new()
    }
}

/// A seed the visitor did not choose.
pub fn new_seed() -> u64 {
    (js_sys::Math::random() * 1e9) as u64
}
