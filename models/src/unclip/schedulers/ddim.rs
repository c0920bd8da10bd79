//! DDIM (Song et al. 2021), as diffusers' `DDIMScheduler` with eta 0, the deterministic sampler: each step
//! estimates the clean sample and moves to the previous timestep along the estimated noise. The estimate is
//! kept, for previews of the picture while it denoises.

use burn::prelude::*;
use serde::Deserialize;

use super::noise::{NoiseConfig, Prediction, TimestepSpacing, alpha_at, spaced_timesteps};
use super::{SchedulerError, timestep_at};

/// `DDIMScheduler`'s fields of `scheduler_config.json`, with its defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DdimConfig {
    #[serde(flatten)]
    pub noise: NoiseConfig,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub thresholding: bool,
    pub rescale_betas_zero_snr: bool,
}

impl Default for DdimConfig {
    fn default() -> Self {
        Self {
            noise: NoiseConfig::default(),
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            thresholding: false,
            rescale_betas_zero_snr: false,
        }
    }
}

#[derive(Debug)]
pub struct Ddim {
    alphas_cumprod: Vec<f64>,
    final_alpha: f64,
    prediction: Prediction,
    clip: Option<f64>,
    stride: i64,
    timesteps: Vec<i64>,
    calls: usize,
}

/// One DDIM step: the next sample and the clean sample it was estimated from.
#[derive(Debug)]
pub struct DdimStep<B: Backend> {
    pub prev_sample: Tensor<B, 4>,
    pub pred_original_sample: Tensor<B, 4>,
}

impl Ddim {
    pub fn new(config: &DdimConfig, steps: usize) -> Result<Self, SchedulerError> {
        for (field, asked) in [
            ("thresholding", config.thresholding),
            ("rescale_betas_zero_snr", config.rescale_betas_zero_snr),
        ] {
            if asked {
                return Err(SchedulerError::Unsupported {
                    field,
                    value: "true".into(),
                });
            }
        }
        let noise = &config.noise;
        let alphas_cumprod = noise.alphas_cumprod()?;
        let train = noise.num_train_timesteps;
        Ok(Self {
            final_alpha: if config.set_alpha_to_one {
                1.0
            } else {
                alphas_cumprod[0]
            },
            alphas_cumprod,
            prediction: noise.prediction_type,
            clip: config.clip_sample.then_some(config.clip_sample_range),
            stride: (train / steps.max(1)) as i64,
            timesteps: spaced_timesteps(
                config.timestep_spacing,
                train,
                steps,
                config.steps_offset,
            )?,
            calls: 0,
        })
    }

    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    pub fn step<B: Backend>(
        &mut self,
        model_output: Tensor<B, 4>,
        sample: Tensor<B, 4>,
    ) -> Result<DdimStep<B>, SchedulerError> {
        let timestep = timestep_at(&self.timesteps, self.calls)?;
        self.calls += 1;
        let alpha = alpha_at(&self.alphas_cumprod, timestep, self.final_alpha);
        let alpha_prev = alpha_at(
            &self.alphas_cumprod,
            timestep - self.stride,
            self.final_alpha,
        );
        let beta = 1.0 - alpha;
        let (original, epsilon) = match self.prediction {
            Prediction::Epsilon => (
                (sample - model_output.clone().mul_scalar(beta.sqrt())).div_scalar(alpha.sqrt()),
                model_output,
            ),
            Prediction::Sample => {
                let epsilon = (sample - model_output.clone().mul_scalar(alpha.sqrt()))
                    .div_scalar(beta.sqrt());
                (model_output, epsilon)
            }
            Prediction::VPrediction => (
                sample.clone().mul_scalar(alpha.sqrt())
                    - model_output.clone().mul_scalar(beta.sqrt()),
                model_output.mul_scalar(alpha.sqrt()) + sample.mul_scalar(beta.sqrt()),
            ),
        };
        let original = match self.clip {
            Some(range) => original.clamp(-range, range),
            None => original,
        };
        let prev_sample = original.clone().mul_scalar(alpha_prev.sqrt())
            + epsilon.mul_scalar((1.0 - alpha_prev).sqrt());
        Ok(DdimStep {
            prev_sample,
            pred_original_sample: original,
        })
    }
}
