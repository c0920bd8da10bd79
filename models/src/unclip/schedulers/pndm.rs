//! PNDM (Liu et al. 2022), as diffusers' `PNDMScheduler`: Runge-Kutta warm-up steps (four model calls each)
//! unless `skip_prk_steps`, then linear multistep (PLMS) steps over the last four model outputs. The paper's
//! pipeline steps Stable unCLIP with it.

use burn::prelude::*;
use serde::Deserialize;

use super::noise::{NoiseConfig, Prediction, TimestepSpacing, alpha_at, spaced_timesteps};
use super::{SchedulerError, timestep_at};

/// `PNDMScheduler`'s fields of `scheduler_config.json`, with its defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PndmConfig {
    #[serde(flatten)]
    pub noise: NoiseConfig,
    pub skip_prk_steps: bool,
    pub set_alpha_to_one: bool,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
}

impl Default for PndmConfig {
    fn default() -> Self {
        Self {
            noise: NoiseConfig::default(),
            skip_prk_steps: false,
            set_alpha_to_one: false,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
        }
    }
}

#[derive(Debug)]
pub struct Pndm<B: Backend> {
    alphas_cumprod: Vec<f64>,
    final_alpha: f64,
    prediction: Prediction,
    /// Training timesteps per inference step.
    stride: i64,
    /// Model calls of the Runge-Kutta warm-up; the rest are multistep calls.
    prk_calls: usize,
    timesteps: Vec<i64>,
    counter: usize,
    /// The model outputs the multistep formula combines, latest last.
    ets: Vec<Tensor<B, 4>>,
    /// The Runge-Kutta step's weighted sum of model outputs so far.
    rk_sum: Option<Tensor<B, 4>>,
    /// The sample a Runge-Kutta step (or PLMS's first step) started from.
    start_sample: Option<Tensor<B, 4>>,
}

impl<B: Backend> Pndm<B> {
    pub fn new(config: &PndmConfig, steps: usize) -> Result<Self, SchedulerError> {
        let noise = &config.noise;
        if noise.prediction_type == Prediction::Sample {
            return Err(SchedulerError::Unsupported {
                field: "prediction_type",
                value: "sample".into(),
            });
        }
        let alphas_cumprod = noise.alphas_cumprod()?;
        let train = noise.num_train_timesteps;
        let mut ascending =
            spaced_timesteps(config.timestep_spacing, train, steps, config.steps_offset)?;
        ascending.reverse();
        let stride = (train / steps) as i64;
        let (prk, plms) = if config.skip_prk_steps {
            (Vec::new(), skip_prk_plms(&ascending))
        } else {
            if steps < 4 {
                return Err(SchedulerError::Invalid(format!(
                    "PNDM's Runge-Kutta warm-up needs at least 4 steps, not {steps} (or skip_prk_steps)"
                )));
            }
            (
                prk_timesteps(&ascending, stride / 2),
                ascending[..steps - 3].iter().rev().copied().collect(),
            )
        };
        Ok(Self {
            final_alpha: if config.set_alpha_to_one {
                1.0
            } else {
                alphas_cumprod[0]
            },
            alphas_cumprod,
            prediction: noise.prediction_type,
            stride,
            prk_calls: prk.len(),
            timesteps: prk.into_iter().chain(plms).collect(),
            counter: 0,
            ets: Vec::new(),
            rk_sum: None,
            start_sample: None,
        })
    }

    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    pub fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        sample: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, SchedulerError> {
        let timestep = timestep_at(&self.timesteps, self.counter)?;
        let next = if self.counter < self.prk_calls {
            self.step_prk(model_output, timestep, sample)
        } else {
            self.step_plms(model_output, timestep, sample)
        };
        self.counter += 1;
        Ok(next)
    }

    /// One of the four calls of a Runge-Kutta step: the outputs are summed with weights 1/6, 1/3, 1/3, 1/6,
    /// each call moving from the step's start by half a step (calls 2 and 3) or a whole one.
    fn step_prk(
        &mut self,
        output: Tensor<B, 4>,
        timestep: i64,
        sample: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let half = if self.counter % 2 == 1 {
            0
        } else {
            self.stride / 2
        };
        let prev_timestep = timestep - half;
        let start_timestep = self.timesteps[self.counter / 4 * 4];
        let weighted = |w: f64, t: &Tensor<B, 4>| t.clone().mul_scalar(w);
        let output = match self.counter % 4 {
            0 => {
                self.rk_sum = Some(weighted(1.0 / 6.0, &output));
                self.ets.push(output.clone());
                self.start_sample = Some(sample.clone());
                output
            }
            1 | 2 => {
                self.rk_sum = self
                    .rk_sum
                    .take()
                    .map(|sum| sum + weighted(1.0 / 3.0, &output));
                output
            }
            _ => {
                let last = weighted(1.0 / 6.0, &output);
                self.rk_sum.take().map_or(last.clone(), |sum| sum + last)
            }
        };
        let from = self.start_sample.clone().unwrap_or(sample);
        self.previous_sample(from, start_timestep, prev_timestep, output)
    }

    /// A linear multistep call: the outputs of the last four steps combined by the Adams-Bashforth weights,
    /// fewer at the start.
    fn step_plms(
        &mut self,
        output: Tensor<B, 4>,
        timestep: i64,
        sample: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let (mut timestep, mut prev_timestep) = (timestep, timestep - self.stride);
        if self.counter == 1 {
            // The second call re-evaluates the first step at its end (Heun-like), from the first sample.
            (timestep, prev_timestep) = (timestep + self.stride, timestep);
        } else {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(output.clone());
        }
        let e = |back: usize| self.ets[self.ets.len() - back].clone();
        let mut sample = sample;
        let combined = match (self.ets.len(), self.counter) {
            (1, 0) => {
                self.start_sample = Some(sample.clone());
                output
            }
            (1, 1) => {
                sample = self.start_sample.take().unwrap_or(sample);
                (output + e(1)).div_scalar(2.0)
            }
            (2, _) => (e(1).mul_scalar(3.0) - e(2)).div_scalar(2.0),
            (3, _) => (e(1).mul_scalar(23.0) - e(2).mul_scalar(16.0) + e(3).mul_scalar(5.0))
                .div_scalar(12.0),
            _ => (e(1).mul_scalar(55.0) - e(2).mul_scalar(59.0) + e(3).mul_scalar(37.0)
                - e(4).mul_scalar(9.0))
            .div_scalar(24.0),
        };
        self.previous_sample(sample, timestep, prev_timestep, combined)
    }

    /// x at `prev_timestep` from x at `timestep` and the noise estimate (formula 9 of the PNDM paper).
    fn previous_sample(
        &self,
        sample: Tensor<B, 4>,
        timestep: i64,
        prev_timestep: i64,
        output: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let alpha = alpha_at(&self.alphas_cumprod, timestep, self.final_alpha);
        let alpha_prev = alpha_at(&self.alphas_cumprod, prev_timestep, self.final_alpha);
        let (beta, beta_prev) = (1.0 - alpha, 1.0 - alpha_prev);
        let epsilon = match self.prediction {
            Prediction::VPrediction => {
                output.mul_scalar(alpha.sqrt()) + sample.clone().mul_scalar(beta.sqrt())
            }
            _ => output,
        };
        let sample_coefficient = (alpha_prev / alpha).sqrt();
        let denominator = alpha * beta_prev.sqrt() + (alpha * beta * alpha_prev).sqrt();
        sample.mul_scalar(sample_coefficient)
            - epsilon.mul_scalar((alpha_prev - alpha) / denominator)
    }
}

/// PLMS alone: every timestep but the last, the second-to-last again, then the last; highest first.
fn skip_prk_plms(ascending: &[i64]) -> Vec<i64> {
    let n = ascending.len();
    let mut plms: Vec<i64> = ascending[..n.saturating_sub(1)].to_vec();
    if n >= 2 {
        plms.push(ascending[n - 2]);
    }
    plms.push(ascending[n - 1]);
    plms.reverse();
    plms
}

/// The warm-up's timesteps over the four lowest inference timesteps: each step's start, its midpoint twice,
/// its end, highest first (diffusers' layout, without the very first and last entries).
fn prk_timesteps(ascending: &[i64], half: i64) -> Vec<i64> {
    let last_four = &ascending[ascending.len() - 4..];
    let pairs: Vec<i64> = last_four.iter().flat_map(|&t| [t, t + half]).collect();
    let doubled: Vec<i64> = pairs[..pairs.len() - 1]
        .iter()
        .flat_map(|&t| [t, t])
        .collect();
    doubled[1..doubled.len() - 1]
        .iter()
        .rev()
        .copied()
        .collect()
}
