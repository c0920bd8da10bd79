//! What travels between the page, the server and the generator workers, defined once: the API's request and
//! answers, the server-sent events of a generation, the broker's jobs and the workers' announcements.
//!
//! Every type is plain data with serde, so the page (wasm), the server and the workers read and write the same
//! JSON.

use serde::{Deserialize, Serialize};

/// Which weights made an image: recorded with every generation so that an old share link shows what it
/// showed. The version is the start of the generator's SHA-256, so changed weights are a new version even
/// under the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub version: String,
}

/// `POST /api/generate`'s body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// The audio (or mixed) latent: as many values as the served model's `latent_length`.
    pub latent: Vec<f32>,
    /// Images to make.
    pub count: usize,
    /// The noise's seed; the server draws one when it is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// BigGAN's truncation trick: noise values outside [-T, T] are redrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<f32>,
    /// The model id the client expects; refused when the server serves another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A diffusion model's denoising steps; its default when left out. Refused by a GAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// A diffusion model's classifier-free guidance scale; its default when left out. Refused by a GAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
}

/// One generation as the generator runtime and the broker's workers take it: the request with its seed drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub latent: Vec<f32>,
    pub seed: u64,
    pub count: usize,
    pub truncation: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
}

/// What kind of network a model draws with, and the controls a request may set for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelKind {
    /// One forward pass per picture (the paper's IC-GAN variant); a request may set the truncation.
    #[default]
    Gan,
    /// Denoised over several steps (the paper's Stable unCLIP variant), with previews on the way.
    Diffusion(DiffusionControls),
}

/// A diffusion model's controls: the defaults a request gets and the largest values it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiffusionControls {
    pub steps: usize,
    pub max_steps: usize,
    pub guidance: f32,
    pub max_guidance: f32,
    /// A preview of the predicted clean picture is sent after every this many steps (0: none).
    pub preview_every: usize,
}

/// The model a server serves (`GET /api/model`): what a client needs to make latents for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedModel {
    pub model: ModelInfo,
    /// Values in a latent.
    pub latent_length: usize,
    /// Side of the square pictures, in pixels.
    pub resolution: usize,
    /// The network's kind and the controls a request may set.
    #[serde(default)]
    pub kind: ModelKind,
    /// Where the audio encoder's weights can be fetched (the project's f16 safetensors format), when this
    /// server has the encoder for this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_encoder: Option<String>,
    /// Where a page for people says which data the weights were trained on and under which licences, when
    /// this server knows it (the embedded default model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_notice: Option<String>,
}

/// The name of the server-sent event that carries an [`ImageEvent`].
pub const IMAGE_EVENT: &str = "image";
/// The name of the server-sent event that carries a [`PreviewEvent`].
pub const PREVIEW_EVENT: &str = "preview";
/// The name of the server-sent event that carries a [`DoneEvent`].
pub const DONE_EVENT: &str = "done";
/// The name of the server-sent event that carries an [`ErrorBody`] and ends the stream.
pub const ERROR_EVENT: &str = "error";

/// One image of a generation, as soon as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEvent {
    pub index: usize,
    pub url: String,
}

/// A diffusion model's picture while it denoises: the clean picture it predicts after `step` of `steps`, as a
/// small JPEG in a `data:` URL (never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewEvent {
    pub index: usize,
    pub step: usize,
    pub steps: usize,
    pub jpeg: String,
}

/// The end of a generation: its record's id and its share link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneEvent {
    pub id: String,
    pub share: String,
}

/// Every error the API answers, and the `error` event that ends a stream: a machine-readable kind and a
/// sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

/// `POST /api/encode-audio` and `POST /api/encode-image`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentBody {
    pub latent: Vec<f32>,
}

/// A finished generation, as its share link shows it (`GET /api/generations/<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: ModelInfo,
    pub seed: u64,
    pub count: usize,
    pub truncation: Option<f32>,
    /// A diffusion model's steps and guidance, as used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    /// The SHA-256 of each image's PNG, in order.
    pub images: Vec<String>,
}

/// One generation as it travels through the broker's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// The model version the front end promised the client; a worker serving another refuses the job.
    pub model: ModelInfo,
    pub request: GenerationRequest,
}

/// What a generator worker announces every second on the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub worker: String,
    pub model: ModelInfo,
    pub feature_dim: usize,
    pub resolution: usize,
    #[serde(default)]
    pub kind: ModelKind,
    /// `batch_sizes[n - 1]`: forward passes of `n` images since the worker started.
    pub batch_sizes: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_takes_its_optional_fields_and_refuses_unknown_ones() {
        let minimal: GenerateRequest =
            serde_json::from_str(r#"{"latent": [0.5, 1], "count": 2}"#).unwrap();
        assert_eq!(minimal.latent, vec![0.5, 1.0]);
        assert_eq!(
            (minimal.seed, minimal.truncation, minimal.model),
            (None, None, None)
        );
        assert_eq!((minimal.steps, minimal.guidance), (None, None));
        assert!(
            serde_json::from_str::<GenerateRequest>(r#"{"latent": [1], "count": 1, "colour": 3}"#)
                .is_err()
        );
        // What a client writes, the server reads back unchanged.
        let full = GenerateRequest {
            seed: Some(7),
            truncation: Some(0.5),
            model: Some("s2v-default".into()),
            steps: Some(25),
            guidance: Some(7.5),
            ..minimal
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(
            serde_json::from_str::<GenerateRequest>(&text).unwrap(),
            full
        );
    }

    #[test]
    fn jobs_round_trip_as_json() {
        let job = Job {
            id: "abc".into(),
            model: ModelInfo {
                id: "m".into(),
                version: "v".into(),
            },
            request: GenerationRequest {
                latent: vec![0.5, -1.0],
                seed: 9,
                count: 2,
                truncation: Some(0.5),
                steps: Some(20),
                guidance: None,
            },
        };
        let back: Job = serde_json::from_slice(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn a_model_kind_reads_as_a_tagged_object_and_defaults_to_the_gan() {
        let served: ServedModel = serde_json::from_str(
            r#"{"model": {"id": "m", "version": "v"}, "latent_length": 512, "resolution": 64}"#,
        )
        .unwrap();
        assert_eq!(served.kind, ModelKind::Gan);
        let diffusion = ModelKind::Diffusion(DiffusionControls {
            steps: 20,
            max_steps: 100,
            guidance: 10.0,
            max_guidance: 30.0,
            preview_every: 5,
        });
        let text = serde_json::to_string(&diffusion).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"diffusion","steps":20"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ModelKind>(&text).unwrap(), diffusion);
    }
}
