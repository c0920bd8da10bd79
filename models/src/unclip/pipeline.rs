//! Stable unCLIP's image-embedding path as Sound2Vision drives it: the sound's embedding, normalised, noised
//! to the noise level and tagged with it, conditions the UNet through its class embedding; the text states
//! are the empty prompt's, for both halves of classifier-free guidance, whose unconditional half gets an
//! all-zero embedding; the scheduler steps the latents and the VAE decodes them.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;

use super::schedulers::{
    NoiseConfig, Prediction, Scheduler, SchedulerError, SchedulerKind, read_config,
};
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
    /// Whether the VAE decodes in f32 whatever the latents' precision (its weights are f32 then).
    vae_upcast: bool,
    normalizer: ImageNormalizer<B>,
    /// alpha_bar of the image-noising scheduler, at each of its timesteps.
    noising_alphas: Vec<f64>,
    scheduler_config: String,
    /// The UNet's training schedule (alpha_bar at each timestep) and what it predicts: for the clean image a
    /// preview shows.
    training_alphas: Vec<f64>,
    prediction: Prediction,
    /// The text encoder's states for the empty prompt, `[1, tokens, width]`.
    text_states: Tensor<B, 3>,
}

/// One scheduler call done: which, of how many, and the latents it left.
pub struct Progress<'a, B: Backend> {
    pub call: usize,
    pub calls: usize,
    pub latents: &'a Tensor<B, 4>,
}

/// Pictures being denoised together under one sampling: what is kept between UNet calls. Several of them
/// (at different steps, with different guidance) can share each UNet call ([`UnclipPipeline::step_together`]),
/// which is how a server batches requests that arrived at different times.
#[derive(Debug)]
pub struct Denoising<B: Backend> {
    scheduler: Scheduler<B>,
    latents: Tensor<B, 4>,
    /// The class input of each picture, `[n, 2 x width]`.
    condition: Tensor<B, 2>,
    guidance: f64,
    call: usize,
    /// The clean latents the last UNet call predicted.
    predicted_clean: Option<Tensor<B, 4>>,
}

impl<B: Backend> Denoising<B> {
    /// Pictures in this run.
    pub fn len(&self) -> usize {
        self.latents.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// UNet calls made so far.
    pub fn calls_done(&self) -> usize {
        self.call
    }

    /// UNet calls the scheduler takes in all.
    pub fn calls(&self) -> usize {
        self.scheduler.timesteps().len()
    }

    pub fn is_finished(&self) -> bool {
        self.call >= self.calls()
    }

    /// The latents as they stand.
    pub fn latents(&self) -> &Tensor<B, 4> {
        &self.latents
    }

    /// The clean latents the last UNet call predicted (`None` before the first): what a preview decodes.
    pub fn predicted_clean(&self) -> Option<&Tensor<B, 4>> {
        self.predicted_clean.as_ref()
    }

    fn guided(&self) -> bool {
        self.guidance > 1.0
    }
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
        let vae = if vae_config.force_upcast {
            vae.in_single_precision()
        } else {
            vae
        };
        let scheduler_config = read_text(&dirs.scheduler.join("scheduler_config.json"))?;
        let training: NoiseConfig = read_config(&scheduler_config)?;
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
            vae_upcast: vae_config.force_upcast,
            normalizer,
            noising_alphas: noising.alphas_cumprod()?,
            scheduler_config,
            training_alphas: training.alphas_cumprod()?,
            prediction: training.prediction_type,
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

    /// The text of the model's `scheduler_config.json`, which configures every scheduler kind.
    pub fn scheduler_config(&self) -> &str {
        &self.scheduler_config
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
        let mut run = self.start(embeddings, latents, image_noise, sampling)?;
        while !run.is_finished() {
            self.step_together(&mut [&mut run])?;
            on_step(Progress {
                call: run.call - 1,
                calls: run.calls(),
                latents: &run.latents,
            });
        }
        Ok(self.decode(run.latents))
    }

    /// A run of pictures ready for its first UNet call: the arguments are those of [`Self::generate`].
    pub fn start(
        &self,
        embeddings: Tensor<B, 2>,
        latents: Tensor<B, 4>,
        image_noise: Tensor<B, 2>,
        sampling: &Sampling,
    ) -> Result<Denoising<B>, PipelineError> {
        self.check_inputs(&embeddings, &latents, &image_noise, sampling)?;
        let scheduler = self.scheduler(sampling)?;
        Ok(Denoising {
            scheduler,
            latents,
            condition: self.condition(embeddings, image_noise, sampling.noise_level),
            guidance: sampling.guidance,
            call: 0,
            predicted_clean: None,
        })
    }

    /// The scheduler `sampling` asks for, configured from the model's own schedule: an error names what it
    /// cannot do (too few or too many steps, say) before any work is done.
    pub fn scheduler(&self, sampling: &Sampling) -> Result<Scheduler<B>, PipelineError> {
        Ok(Scheduler::from_config_json(
            sampling.scheduler,
            &self.scheduler_config,
            sampling.steps,
        )?)
    }

    /// One UNet call for every unfinished run in `runs` together, each at its own timestep and with its own
    /// guidance, then each run's scheduler step. Classifier-free guidance's unconditional rows (the all-zero
    /// embedding) ride in the same call.
    pub fn step_together(&self, runs: &mut [&mut Denoising<B>]) -> Result<(), PipelineError> {
        let mut active: Vec<&mut Denoising<B>> = runs
            .iter_mut()
            .map(|run| &mut **run)
            .filter(|run| !run.is_finished())
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        let mut timesteps = Vec::with_capacity(active.len());
        for run in &active {
            timesteps.push(run.scheduler.timesteps()[run.call]);
        }
        let output = self.unet_call(&active, &timesteps);
        let mut conditional_row = 0;
        let mut unconditional_row = active.iter().map(|run| run.len()).sum::<usize>();
        for (run, &t) in active.iter_mut().zip(&timesteps) {
            let n = run.len();
            let conditional = output.clone().narrow(0, conditional_row, n);
            conditional_row += n;
            let prediction = if run.guided() {
                let unconditional = output.clone().narrow(0, unconditional_row, n);
                unconditional_row += n;
                unconditional.clone() + (conditional - unconditional).mul_scalar(run.guidance)
            } else {
                conditional
            };
            run.predicted_clean = Some(self.clean_latents(&prediction, &run.latents, t)?);
            run.latents = run.scheduler.step(prediction, run.latents.clone())?;
            run.call += 1;
        }
        Ok(())
    }

    /// The UNet's output for every run's pictures (conditional rows first, in order, then the unconditional
    /// rows of the guided runs).
    fn unet_call(&self, runs: &[&mut Denoising<B>], timesteps: &[i64]) -> Tensor<B, 4> {
        let mut latents = Vec::new();
        let mut conditions = Vec::new();
        let mut row_timesteps = Vec::new();
        for (run, &t) in runs.iter().zip(timesteps) {
            latents.push(run.latents.clone());
            conditions.push(run.condition.clone());
            row_timesteps.extend(std::iter::repeat_n(t as f32, run.len()));
        }
        for (run, &t) in runs.iter().zip(timesteps).filter(|(run, _)| run.guided()) {
            latents.push(run.latents.clone());
            conditions.push(run.condition.zeros_like());
            row_timesteps.extend(std::iter::repeat_n(t as f32, run.len()));
        }
        let batch = row_timesteps.len();
        let [_, tokens, width] = self.text_states.dims();
        let states = self.text_states.clone().expand([batch, tokens, width]);
        self.unet.forward(
            Tensor::cat(latents, 0),
            &row_timesteps,
            states,
            Some(Tensor::cat(conditions, 0)),
        )
    }

    /// The clean latents implied by the (guided) model output at training timestep `t`.
    fn clean_latents(
        &self,
        output: &Tensor<B, 4>,
        sample: &Tensor<B, 4>,
        t: i64,
    ) -> Result<Tensor<B, 4>, PipelineError> {
        let alpha = usize::try_from(t)
            .ok()
            .and_then(|t| self.training_alphas.get(t))
            .copied()
            .ok_or_else(|| {
                PipelineError::Input(format!("timestep {t} is outside the training schedule"))
            })?;
        let (signal, noise) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        Ok(match self.prediction {
            Prediction::Epsilon => {
                (sample.clone() - output.clone().mul_scalar(noise)).div_scalar(signal)
            }
            Prediction::VPrediction => {
                sample.clone().mul_scalar(signal) - output.clone().mul_scalar(noise)
            }
            Prediction::Sample => output.clone(),
        })
    }

    /// Pixels in [0, 1] from latents on the diffusion's scale, in the latents' precision.
    pub fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = latents.dtype();
        let latents = if self.vae_upcast {
            latents.cast(DType::F32)
        } else {
            latents
        };
        let pixels = self.vae.forward(latents.div_scalar(self.vae_scaling));
        pixels
            .div_scalar(2.0)
            .add_scalar(0.5)
            .clamp(0.0, 1.0)
            .cast(dtype)
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

/// The starting noise of `n` pictures from one seed: one standard-normal stream, every picture's latents
/// (`latent_shape` each) first, then every picture's embedding noise (`width` each). The CLI and the server
/// draw it alike, so one seed gives one picture wherever it is made.
pub fn seeded_noise(
    seed: u64,
    n: usize,
    latent_shape: [usize; 3],
    width: usize,
) -> (Vec<f32>, Vec<f32>) {
    let per_latent: usize = latent_shape.iter().product();
    let mut drawn = crate::generator::sample_noise(seed, 1, n * (per_latent + width), None)
        .expect("untruncated noise is always valid");
    let image_noise = drawn.split_off(n * per_latent);
    (drawn, image_noise)
}
