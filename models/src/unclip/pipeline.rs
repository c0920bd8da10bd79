//! Stable unCLIP's image-embedding path as Sound2Vision drives it: the sound's embedding, normalised, noised
//! to the noise level and tagged with it, conditions the UNet through its class embedding; the text states
//! are the empty prompt's, for both halves of classifier-free guidance, whose unconditional half gets an
//! all-zero embedding; the scheduler steps the latents and the VAE decodes them.

use std::path::Path;

use burn::prelude::*;

use super::schedulers::{NoiseConfig, Scheduler, SchedulerError, SchedulerKind, read_config};
use super::unet::{Unet, timestep_embedding};
use super::vae_decoder::VaeDecoder;
use super::weights::{read_safetensors, read_text};
use crate::checkpoint::CheckpointError;

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Input(String),
}

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub steps: usize,
    /// Classifier-free guidance; 1 or less turns it off.
    pub guidance: f64,
    pub scheduler: SchedulerKind,
    /// The image-noising scheduler's timestep applied to the embedding (the paper's is 0).
    pub noise_level: usize,
}

impl Default for Sampling {
    /// The paper's: 20 PNDM steps, guidance 10, noise level 0.
    fn default() -> Self {
        Self {
            steps: 20,
            guidance: 10.0,
            scheduler: SchedulerKind::Pndm,
            noise_level: 0,
        }
    }
}

/// `StableUnCLIPImageNormalizer`: the CLIP image embeddings' mean and standard deviation.
#[derive(Debug)]
struct ImageNormalizer<B: Backend> {
    mean: Tensor<B, 2>,
    std: Tensor<B, 2>,
}

/// The networks and constants of a Stable unCLIP model.
#[derive(Debug)]
pub struct UnclipPipeline<B: Backend> {
    unet: Unet<B>,
    vae: VaeDecoder<B>,
    vae_scaling: f64,
    normalizer: ImageNormalizer<B>,
    /// alpha_bar of the image-noising scheduler, at each of its timesteps.
    noising_alphas: Vec<f64>,
    scheduler_config: String,
    /// The text encoder's states for the empty prompt, `[1, tokens, width]`.
    text_states: Tensor<B, 3>,
}

/// One scheduler call done: which, of how many, and the latents it left.
pub struct Progress<'a, B: Backend> {
    pub call: usize,
    pub calls: usize,
    pub latents: &'a Tensor<B, 4>,
}

impl<B: Backend> UnclipPipeline<B> {
    /// From the folders of a diffusers Stable unCLIP model (`unet/`, `vae/`, `scheduler/`,
    /// `image_normalizer/`, `image_noising_scheduler/`, each where `dirs` says) and the empty prompt's text
    /// states.
    pub fn load(
        dirs: &PipelineDirs<'_>,
        text_states: Tensor<B, 3>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let (unet, unet_config) = Unet::from_diffusers_dir(dirs.unet, dirs.fp16, device)?;
        let (vae, vae_config) = VaeDecoder::from_diffusers_dir(dirs.vae, dirs.fp16, device)?;
        let scheduler_config = read_text(&dirs.scheduler.join("scheduler_config.json"))?;
        let noising: NoiseConfig = read_config(&read_text(
            &dirs.image_noising_scheduler.join("scheduler_config.json"),
        )?)?;
        let mut normalizer = read_safetensors(
            &dirs
                .image_normalizer
                .join("diffusion_pytorch_model.safetensors"),
        )?
        .for_network("image normaliser", "");
        let width = normalizer.shape("mean")?.last().copied().unwrap_or(0);
        let normalizer = ImageNormalizer {
            mean: normalizer.take("mean", [1, width], device)?,
            std: normalizer.take("std", [1, width], device)?,
        };
        let [_, tokens, text_width] = text_states.dims();
        if text_width != unet_config.cross_attention_dim || tokens == 0 {
            return Err(PipelineError::Input(format!(
                "the text states are {tokens} x {text_width}, but the UNet attends to width {}",
                unet_config.cross_attention_dim
            )));
        }
        if unet_config.projection_class_embeddings_input_dim != Some(2 * width) {
            return Err(PipelineError::Input(format!(
                "the image normaliser is {width} wide, but the UNet's class embedding takes {:?} (twice it)",
                unet_config.projection_class_embeddings_input_dim
            )));
        }
        Ok(Self {
            unet,
            vae,
            vae_scaling: vae_config.scaling_factor,
            normalizer,
            noising_alphas: noising.alphas_cumprod()?,
            scheduler_config,
            text_states,
        })
    }

    /// Seconds one UNet call takes on `side` x `side` latents (batch 1), for estimating a run's cost.
    pub fn time_unet_call(&self, channels: usize, side: usize, device: &B::Device) -> f64 {
        let [_, tokens, width] = self.text_states.dims();
        let latents = Tensor::zeros([1, channels, side, side], device);
        let condition = Tensor::zeros([1, 2 * self.embedding_width()], device);
        let states = self.text_states.clone().expand([1, tokens, width]);
        let started = std::time::Instant::now();
        let output = self
            .unet
            .forward(latents, &[999.0], states, Some(condition));
        // Reading the output waits for the backend to finish.
        let _ = output.sum().into_scalar();
        started.elapsed().as_secs_f64()
    }

    /// The embedding width the pipeline takes.
    pub fn embedding_width(&self) -> usize {
        self.normalizer.mean.dims()[1]
    }

    /// Pictures `[n, 3, H, W]` in [0, 1] for `embeddings` `[n, width]`, from `latents` `[n, 4, h, w]` (the
    /// starting noise) and `image_noise` `[n, width]` (the noise the embedding is augmented with), calling
    /// `on_step` after each scheduler call.
    pub fn generate(
        &self,
        embeddings: Tensor<B, 2>,
        latents: Tensor<B, 4>,
        image_noise: Tensor<B, 2>,
        sampling: &Sampling,
        mut on_step: impl FnMut(Progress<'_, B>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        self.check_inputs(&embeddings, &latents, &image_noise, sampling)?;
        let n = embeddings.dims()[0];
        let guided = sampling.guidance > 1.0;
        let condition = self.condition(embeddings, image_noise, sampling.noise_level);
        let condition = if guided {
            Tensor::cat(vec![condition.zeros_like(), condition], 0)
        } else {
            condition
        };
        let batch = condition.dims()[0];
        let [_, tokens, width] = self.text_states.dims();
        let states = self.text_states.clone().expand([batch, tokens, width]);
        let mut scheduler = Scheduler::from_config_json(
            sampling.scheduler,
            &self.scheduler_config,
            sampling.steps,
        )?;
        let timesteps = scheduler.timesteps().to_vec();
        let mut latents = latents;
        for (call, &t) in timesteps.iter().enumerate() {
            let input = if guided {
                Tensor::cat(vec![latents.clone(), latents.clone()], 0)
            } else {
                latents.clone()
            };
            let output = self.unet.forward(
                input,
                &vec![t as f32; batch],
                states.clone(),
                Some(condition.clone()),
            );
            let output = if guided {
                let unconditional = output.clone().narrow(0, 0, n);
                let conditional = output.narrow(0, n, n);
                unconditional.clone() + (conditional - unconditional).mul_scalar(sampling.guidance)
            } else {
                output
            };
            latents = scheduler.step(output, latents)?;
            on_step(Progress {
                call,
                calls: timesteps.len(),
                latents: &latents,
            });
        }
        Ok(self.decode(latents))
    }

    /// Pixels in [0, 1] from latents on the diffusion's scale.
    pub fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let pixels = self.vae.forward(latents.div_scalar(self.vae_scaling));
        pixels.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0)
    }

    /// The class input: the embedding normalised, noised to `level` by the image-noising scheduler,
    /// unnormalised, then the level's sinusoidal embedding beside it.
    fn condition(
        &self,
        embeddings: Tensor<B, 2>,
        noise: Tensor<B, 2>,
        level: usize,
    ) -> Tensor<B, 2> {
        let [n, width] = embeddings.dims();
        let alpha = self.noising_alphas[level];
        let ImageNormalizer { mean, std } = &self.normalizer;
        let scaled = (embeddings - mean.clone()).div(std.clone());
        let noised = scaled.mul_scalar(alpha.sqrt()) + noise.mul_scalar((1.0 - alpha).sqrt());
        let unscaled = noised.mul(std.clone()) + mean.clone();
        let level_embedding = timestep_embedding(&vec![level as f32; n], width, 0.0, true);
        let level_embedding = Tensor::from_data(
            TensorData::new(level_embedding, [n, width]),
            &unscaled.device(),
        );
        Tensor::cat(vec![unscaled, level_embedding], 1)
    }

    fn check_inputs(
        &self,
        embeddings: &Tensor<B, 2>,
        latents: &Tensor<B, 4>,
        image_noise: &Tensor<B, 2>,
        sampling: &Sampling,
    ) -> Result<(), PipelineError> {
        let width = self.embedding_width();
        let [n, embedding_width] = embeddings.dims();
        let input = |message: String| Err(PipelineError::Input(message));
        if n == 0 || embedding_width != width {
            return input(format!(
                "expected embeddings [n >= 1, {width}], got [{n}, {embedding_width}]"
            ));
        }
        if latents.dims()[0] != n || image_noise.dims() != [n, width] {
            return input(format!(
                "{n} embeddings need {n} latents and [{n}, {width}] image noise, got {:?} and {:?}",
                latents.dims(),
                image_noise.dims()
            ));
        }
        if sampling.noise_level >= self.noising_alphas.len() {
            return input(format!(
                "noise level {} is past the image-noising scheduler's {} timesteps",
                sampling.noise_level,
                self.noising_alphas.len()
            ));
        }
        if !sampling.guidance.is_finite() {
            return input(format!("guidance {} is not a number", sampling.guidance));
        }
        let non_finite = |t: &Tensor<B, 2>| !t.clone().is_finite().all().into_scalar().to_bool();
        if non_finite(embeddings) || non_finite(image_noise) {
            return input("the embeddings or the image noise hold NaN or infinite values".into());
        }
        Ok(())
    }
}

/// Where each part of a Stable unCLIP model is.
pub struct PipelineDirs<'a> {
    pub unet: &'a Path,
    pub vae: &'a Path,
    pub scheduler: &'a Path,
    pub image_normalizer: &'a Path,
    pub image_noising_scheduler: &'a Path,
    /// Read the `.fp16.safetensors` weight files.
    pub fp16: bool,
}
