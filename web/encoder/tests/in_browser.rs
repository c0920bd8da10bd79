//! The audio front end and the audio encoder compiled to wasm, in a dedicated worker of headless Chromium (as
//! the page runs them), against the reference fixtures: the same tolerances as the native parity test.
//!
//! `tests/wasm` prepares `tests/data/` (the reference clips and spectrograms, and the reference audio encoder
//! converted to the project's format) and runs these with wasm-bindgen-test-runner:
//! `cargo test -p s2v-web-encoder --target wasm32-unknown-unknown`.

#![cfg(target_family = "wasm")]

use s2v_shared::audio::{log_spectrogram, waveform_from_bytes};
use s2v_shared::encoder_protocol::EncoderBackend;
use s2v_web_encoder::model::Encoder;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// A reference clip: the file, and what the reference code computed from it.
struct Clip {
    name: &'static str,
    wav: &'static [u8],
    spectrogram: &'static [u8],
    embedding: &'static [u8],
}

macro_rules! clip {
    ($name:literal) => {
        Clip {
            name: $name,
            wav: include_bytes!(concat!("data/", $name, ".wav")),
            spectrogram: include_bytes!(concat!("data/", $name, ".spectrogram.npy")),
            embedding: include_bytes!(concat!("data/", $name, ".audio_embedding.npy")),
        }
    };
}

const CLIPS: [Clip; 3] = [
    clip!("tone_chirp_10s"),
    clip!("harmonic_3p7s"),
    clip!("clicks_160125"),
];

/// The reference audio encoder, converted by `s2v convert` (f32).
const WEIGHTS: &[u8] = include_bytes!("data/audio_encoder.safetensors");

/// The values of a little-endian float32 `.npy` file.
fn npy(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'<f4'"),
        "not little-endian float32: {header}"
    );
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `||a - b|| / ||b||`.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

#[wasm_bindgen_test]
fn the_front_end_gives_the_reference_spectrograms() {
    for clip in CLIPS {
        let waveform = waveform_from_bytes(clip.wav, Some("wav")).unwrap();
        let ours = log_spectrogram(&waveform).unwrap().data;
        let reference = npy(clip.spectrogram);
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "{}: max abs error {worst}", clip.name);
    }
}

async fn encoder_matches_the_reference(try_gpu: bool) -> EncoderBackend {
    let (encoder, no_webgpu) = Encoder::load(WEIGHTS, try_gpu).await.unwrap();
    for clip in CLIPS {
        let latent = encoder.latent(npy(clip.spectrogram)).await.unwrap();
        let error = relative_error(&latent, &npy(clip.embedding));
        assert!(
            error < 1e-3,
            "{} on {:?} ({no_webgpu:?}): relative error {error}",
            clip.name,
            encoder.backend()
        );
    }
    encoder.backend()
}

#[wasm_bindgen_test]
async fn the_encoder_on_the_cpu_gives_the_reference_embeddings() {
    assert_eq!(
        encoder_matches_the_reference(false).await,
        EncoderBackend::Cpu
    );
}

/// Headless Chromium offers a software WebGPU adapter with `--enable-unsafe-webgpu` (webdriver.json): the
/// encoder must take it, and give the same embeddings there.
#[wasm_bindgen_test]
async fn the_encoder_on_webgpu_gives_the_reference_embeddings() {
    assert_eq!(
        encoder_matches_the_reference(true).await,
        EncoderBackend::WebGpu
    );
}
