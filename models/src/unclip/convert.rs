//! `s2v convert-unclip`: a diffusers Stable unCLIP folder and Sound2Vision's audio encoder become the folder
//! the project serves from. Only what serving needs is kept: the UNet and the VAE's decoder in f16, the
//! schedulers' and the normaliser's files, the empty prompt's text states computed once (so serving needs no
//! tokenizer and no text encoder), and the audio encoder in the project's format.
//!
//! Every network is loaded before it is written, so a folder that is not Stable unCLIP's fails with the
//! tensor at fault named, and nothing is half-written: each file lands by rename. The manifest, written last,
//! carries the SHA-256 of everything else, so a server names the model's version without reading gigabytes at
//! start-up.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audio::load_sound2vision_encoder;
use super::pipeline::{PipelineDirs, PipelineError, UnclipPipeline};
use super::text_encoder::{TextEncoder, empty_prompt_ids};
use super::unet::Unet;
use super::vae_decoder::VaeDecoder;
use super::weights::{read_safetensors, read_text, weights_file, write_f16_safetensors};
use crate::checkpoint::{CheckpointError, save_native, write_whole};
use crate::{AudioEncoder, NetworkModule};

/// The converted folder's description of itself.
pub const MANIFEST: &str = "unclip.json";
const TEXT_STATES: &str = "text_states.safetensors";
pub const AUDIO_ENCODER: &str = "audio_encoder.safetensors";
const WEIGHTS: &str = "diffusion_pytorch_model";

/// The manifest's layout; a folder converted by an `s2v` that wrote another is converted again.
pub const FORMAT: u32 = 2;

/// What a converted model is: the sizes a caller needs before loading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnclipManifest {
    pub format: u32,
    /// The audio (CLIP image) embedding's width.
    pub embedding_width: usize,
    pub latent_channels: usize,
    /// The latents' side at the model's native size.
    pub sample_size: usize,
    /// Pixels per latent along each side (the VAE's upsampling).
    pub vae_scale: usize,
    /// Parameters of the UNet, for estimating its cost.
    pub unet_parameters: usize,
    /// SHA-256 (hex) of every other file of the folder, by relative path in sorted order: see
    /// [`folder_digest`].
    pub content_digest: String,
}

fn io(path: &Path, e: &dyn std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, &e))?;
    }
    write_whole(to, |partial| std::fs::copy(from, partial).map(drop))
}

/// Converts `diffusers` (a Stable unCLIP model folder) with the audio encoder at `audio_encoder` into `out`.
pub fn convert_unclip<B: Backend>(
    diffusers: &Path,
    audio_encoder: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<UnclipManifest, CheckpointError> {
    std::fs::create_dir_all(out).map_err(|e| io(out, &e))?;
    let encoder: AudioEncoder<B> = load_sound2vision_encoder(audio_encoder, device)?;

    let (unet, unet_config) =
        Unet::<B>::from_diffusers_dir(&diffusers.join("unet"), false, device)?;
    let unet_parameters = crate::parameter_count(&unet);
    drop(unet);
    let embedding_width = encoder.config().embedding_dim;
    if unet_config.projection_class_embeddings_input_dim != Some(2 * embedding_width) {
        return Err(CheckpointError::InvalidConfig {
            network: "Sound2Vision audio encoder",
            message: format!(
                "its {embedding_width}-d embedding does not fit the UNet's class input of {:?} (twice it)",
                unet_config.projection_class_embeddings_input_dim
            ),
        });
    }
    convert_component(diffusers, out, "unet", |_| true)?;

    let (vae, vae_config) =
        VaeDecoder::<B>::from_diffusers_dir(&diffusers.join("vae"), false, device)?;
    drop(vae);
    let decoding =
        |name: &str| name.starts_with("decoder.") || name.starts_with("post_quant_conv.");
    convert_component(diffusers, out, "vae", decoding)?;

    let text_encoder = TextEncoder::<B>::from_dir(&diffusers.join("text_encoder"), false, device)?;
    let states = text_encoder.forward(&empty_prompt_ids(&diffusers.join("tokenizer"))?)?;
    save_text_states(states, &out.join(TEXT_STATES))?;

    for file in [
        "scheduler/scheduler_config.json",
        "image_noising_scheduler/scheduler_config.json",
        "image_normalizer/config.json",
    ] {
        copy(&diffusers.join(file), &out.join(file))?;
    }
    let normalizer = weights_file(&diffusers.join("image_normalizer"), WEIGHTS, false);
    write_f32_copy(
        &normalizer,
        &out.join("image_normalizer")
            .join(format!("{WEIGHTS}.safetensors")),
    )?;

    save_native(&encoder, &out.join(AUDIO_ENCODER), true)?;
    let manifest = UnclipManifest {
        format: FORMAT,
        embedding_width,
        latent_channels: unet_config.in_channels,
        sample_size: unet_config.sample_size,
        vae_scale: 1 << (vae_config.block_out_channels.len() - 1),
        unet_parameters,
        content_digest: folder_digest(out)?,
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| io(out, &e))?;
    let path = out.join(MANIFEST);
    std::fs::write(&path, json).map_err(|e| io(&path, &e))?;
    Ok(manifest)
}

/// A component's `config.json` copied and its weights written in f16 (those `keep` names).
fn convert_component(
    diffusers: &Path,
    out: &Path,
    component: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    let (from, to) = (diffusers.join(component), out.join(component));
    copy(&from.join("config.json"), &to.join("config.json"))?;
    write_f16_safetensors(
        &weights_file(&from, WEIGHTS, false),
        keep,
        &to.join(format!("{WEIGHTS}.safetensors")),
    )?;
    Ok(())
}

/// The normaliser's two vectors, kept at their precision (a copy).
fn write_f32_copy(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    read_safetensors(from)?;
    copy(from, to)
}

fn save_text_states<B: Backend>(states: Tensor<B, 3>, path: &Path) -> Result<(), CheckpointError> {
    let shape = states.dims().to_vec();
    let values: Vec<f32> = states
        .into_data()
        .to_vec()
        .map_err(|e| CheckpointError::BadData {
            tensor: "text_states".into(),
            message: format!("{e:?}"),
        })?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(|e| io(path, &e))?;
    write_whole(path, |partial| {
        safetensors::serialize_to_file([("text_states", view)], None, partial)
    })
}

/// The SHA-256 of the files under `dir` but its manifest: each file's path relative to `dir`, then its bytes,
/// in the order of the sorted paths.
pub fn folder_digest(dir: &Path) -> Result<String, CheckpointError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.retain(|relative| relative.as_path() != Path::new(MANIFEST));
    files.sort();
    let mut digest = Sha256::new();
    for relative in &files {
        let path = dir.join(relative);
        let mut file = std::fs::File::open(&path).map_err(|e| io(&path, &e))?;
        digest.update(relative.to_string_lossy().as_bytes());
        std::io::copy(&mut file, &mut digest).map_err(|e| io(&path, &e))?;
    }
    Ok(hex::encode(digest.finalize()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CheckpointError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, &e))? {
        let path = entry.map_err(|e| io(dir, &e))?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
}

/// A folder `convert_unclip` wrote, its manifest read (once) and checked.
#[derive(Debug, Clone)]
pub struct ConvertedUnclip {
    pub dir: PathBuf,
    pub manifest: UnclipManifest,
}

impl ConvertedUnclip {
    /// Reads `dir`'s manifest; a folder without one, or converted by an `s2v` that wrote another format, is
    /// refused by name.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(MANIFEST);
        let text = read_text(&path)?;
        let invalid = |message: String| CheckpointError::InvalidConfig {
            network: "converted unCLIP model",
            message: format!("{}: {message}", path.display()),
        };
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let Format { format } = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if format != FORMAT {
            return Err(invalid(format!(
                "format {format}, written by another version of `s2v convert-unclip` (this one reads \
                 {FORMAT}): convert the model again"
            )));
        }
        let manifest = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The model's name: its folder's.
    pub fn name(&self) -> &str {
        self.dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("diffusion")
    }

    /// The pipeline, on `device`.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<UnclipPipeline<B>, PipelineError> {
        let dir = &self.dir;
        let mut states = read_safetensors(&dir.join(TEXT_STATES))?.for_network("text states", "");
        let shape = states.shape("text_states")?;
        let [1, tokens, width] = shape[..] else {
            return Err(PipelineError::Input(format!(
                "text_states has shape {shape:?}, not [1, tokens, width]"
            )));
        };
        let states = states.take("text_states", [1, tokens, width], device)?;
        let (unet, vae, scheduler, normalizer, noising) = (
            dir.join("unet"),
            dir.join("vae"),
            dir.join("scheduler"),
            dir.join("image_normalizer"),
            dir.join("image_noising_scheduler"),
        );
        let dirs = PipelineDirs {
            unet: &unet,
            vae: &vae,
            scheduler: &scheduler,
            image_normalizer: &normalizer,
            image_noising_scheduler: &noising,
            fp16: false,
        };
        UnclipPipeline::load(&dirs, states, device)
    }
}
