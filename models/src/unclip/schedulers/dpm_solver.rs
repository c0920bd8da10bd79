//! DPM-Solver++ (Lu et al. 2022), multistep, as diffusers' `DPMSolverMultistepScheduler` with its defaults:
//! the model's output is turned into an estimate of the clean sample, and each step solves the diffusion ODE
//! in log-SNR with the last two estimates (the first and the last step with one).

use burn::prelude::*;
use serde::Deserialize;

use super::noise::{NoiseConfig, Prediction, TimestepSpacing, round_half_even};
use super::{SchedulerError, timestep_at};

/// `DPMSolverMultistepScheduler`'s fields of `scheduler_config.json` that this port reads, with its
/// defaults; the variants it does not implement are refused by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DpmSolverConfig {
    #[serde(flatten)]
    pub noise: NoiseConfig,
    pub solver_order: usize,
    pub algorithm_type: String,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub final_sigmas_type: String,
    /// `None` (written as `-Infinity`): no clipping.
    pub lambda_min_clipped: Option<f64>,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub thresholding: bool,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_lu_lambdas: bool,
    pub use_flow_sigmas: bool,
    pub rescale_betas_zero_snr: bool,
}

impl Default for DpmSolverConfig {
    fn default() -> Self {
        Self {
            noise: NoiseConfig::default(),
            solver_order: 2,
            algorithm_type: "dpmsolver++".into(),
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            final_sigmas_type: "zero".into(),
            lambda_min_clipped: None,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            thresholding: false,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            rescale_betas_zero_snr: false,
        }
    }
}

impl DpmSolverConfig {
    /// Refuses, by name, what this port does not implement.
    fn check(&self) -> Result<(), SchedulerError> {
        let unsupported =
            |field: &'static str, value: String| Err(SchedulerError::Unsupported { field, value });
        if self.algorithm_type != "dpmsolver++" {
            return unsupported("algorithm_type", self.algorithm_type.clone());
        }
        if !matches!(self.solver_type.as_str(), "midpoint" | "heun") {
            return unsupported("solver_type", self.solver_type.clone());
        }
        if !matches!(self.solver_order, 1 | 2) {
            return unsupported("solver_order", self.solver_order.to_string());
        }
        if !matches!(self.final_sigmas_type.as_str(), "zero" | "sigma_min") {
            return unsupported("final_sigmas_type", self.final_sigmas_type.clone());
        }
        for (field, asked) in [
            ("thresholding", self.thresholding),
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("use_lu_lambdas", self.use_lu_lambdas),
            ("use_flow_sigmas", self.use_flow_sigmas),
            ("rescale_betas_zero_snr", self.rescale_betas_zero_snr),
        ] {
            if asked {
                return unsupported(field, "true".into());
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct DpmSolver<B: Backend> {
    prediction: Prediction,
    order: usize,
    heun: bool,
    timesteps: Vec<i64>,
    /// sigma = sqrt((1 - alpha_bar) / alpha_bar) at each timestep, and after the last.
    sigmas: Vec<f64>,
    /// Whether the last step (and, under 15 steps, the one before) drops to a lower order.
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_zero: bool,
    /// The clean-sample estimates of the last `order` steps, latest last.
    estimates: Vec<Tensor<B, 4>>,
    lower_order_steps: usize,
    index: usize,
}

impl<B: Backend> DpmSolver<B> {
    pub fn new(config: &DpmSolverConfig, steps: usize) -> Result<Self, SchedulerError> {
        config.check()?;
        let alphas_cumprod = config.noise.alphas_cumprod()?;
        let train = config.noise.num_train_timesteps;
        if steps == 0 || steps > train {
            return Err(SchedulerError::Invalid(format!(
                "{steps} inference steps: there must be from 1 to {train} (the training timesteps)"
            )));
        }
        let last = last_timestep(
            &alphas_cumprod,
            config.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
        );
        let timesteps = dpm_timesteps(
            config.timestep_spacing,
            train,
            last,
            steps,
            config.steps_offset,
        );
        let sigma_of = |alpha: f64| ((1.0 - alpha) / alpha).sqrt();
        let mut sigmas = Vec::with_capacity(timesteps.len() + 1);
        for &t in &timesteps {
            let alpha = usize::try_from(t)
                .ok()
                .and_then(|t| alphas_cumprod.get(t))
                .ok_or_else(|| {
                    SchedulerError::Invalid(format!(
                        "timestep {t} lies outside the {train} training timesteps (steps_offset {})",
                        config.steps_offset
                    ))
                })?;
            sigmas.push(sigma_of(*alpha));
        }
        let final_sigma_zero = config.final_sigmas_type == "zero";
        sigmas.push(if final_sigma_zero {
            0.0
        } else {
            sigma_of(alphas_cumprod[0])
        });
        Ok(Self {
            prediction: config.noise.prediction_type,
            order: config.solver_order,
            heun: config.solver_type == "heun",
            timesteps,
            sigmas,
            lower_order_final: config.lower_order_final,
            euler_at_final: config.euler_at_final,
            final_sigma_zero,
            estimates: Vec::new(),
            lower_order_steps: 0,
            index: 0,
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
        let steps = self.timesteps.len();
        let i = self.index;
        timestep_at(&self.timesteps, i)?;
        let short = self.lower_order_final && steps < 15;
        let first_order_final =
            i == steps - 1 && (self.euler_at_final || short || self.final_sigma_zero);
        let estimate = self.clean_estimate(model_output, sample.clone(), i);
        if self.estimates.len() == self.order {
            self.estimates.remove(0);
        }
        self.estimates.push(estimate);
        let next = if self.order == 1 || self.lower_order_steps < 1 || first_order_final {
            self.first_order(sample, i)
        } else {
            // diffusers' `lower_order_second` only lowers a third-order step, which this port does not run.
            self.second_order(sample, i)
        };
        if self.lower_order_steps < self.order {
            self.lower_order_steps += 1;
        }
        self.index += 1;
        Ok(next)
    }

    /// (alpha_t, sigma_t) of the variance-preserving process at the schedule's `index`.
    fn alpha_sigma(&self, index: usize) -> (f64, f64) {
        let alpha = 1.0 / (self.sigmas[index].powi(2) + 1.0).sqrt();
        (alpha, self.sigmas[index] * alpha)
    }

    fn lambda(&self, index: usize) -> f64 {
        let (alpha, sigma) = self.alpha_sigma(index);
        alpha.ln() - sigma.ln()
    }

    /// The clean sample the model's output implies (DPM-Solver++ works on these).
    fn clean_estimate(&self, output: Tensor<B, 4>, sample: Tensor<B, 4>, i: usize) -> Tensor<B, 4> {
        let (alpha, sigma) = self.alpha_sigma(i);
        match self.prediction {
            Prediction::Epsilon => (sample - output.mul_scalar(sigma)).div_scalar(alpha),
            Prediction::Sample => output,
            Prediction::VPrediction => sample.mul_scalar(alpha) - output.mul_scalar(sigma),
        }
    }

    fn first_order(&self, sample: Tensor<B, 4>, i: usize) -> Tensor<B, 4> {
        let (alpha_t, sigma_t) = self.alpha_sigma(i + 1);
        let (_, sigma_s) = self.alpha_sigma(i);
        let h = self.lambda(i + 1) - self.lambda(i);
        let latest = self.estimates[self.estimates.len() - 1].clone();
        sample.mul_scalar(sigma_t / sigma_s) - latest.mul_scalar(alpha_t * ((-h).exp() - 1.0))
    }

    fn second_order(&self, sample: Tensor<B, 4>, i: usize) -> Tensor<B, 4> {
        let (alpha_t, sigma_t) = self.alpha_sigma(i + 1);
        let (_, sigma_s0) = self.alpha_sigma(i);
        let (lambda_t, lambda_s0, lambda_s1) =
            (self.lambda(i + 1), self.lambda(i), self.lambda(i - 1));
        let n = self.estimates.len();
        let (m0, m1) = (self.estimates[n - 1].clone(), self.estimates[n - 2].clone());
        let (h, h0) = (lambda_t - lambda_s0, lambda_s0 - lambda_s1);
        let d1 = (m0.clone() - m1).mul_scalar(h / h0);
        let decay = (-h).exp() - 1.0;
        let base = sample.mul_scalar(sigma_t / sigma_s0) - m0.mul_scalar(alpha_t * decay);
        if self.heun {
            base + d1.mul_scalar(alpha_t * (decay / h + 1.0))
        } else {
            base - d1.mul_scalar(0.5 * alpha_t * decay)
        }
    }
}

/// The highest timestep whose log-SNR is above `lambda_min_clipped`, plus one (all of them by default).
fn last_timestep(alphas_cumprod: &[f64], lambda_min_clipped: f64) -> usize {
    let lambda = |alpha: f64| 0.5 * (alpha.ln() - (1.0 - alpha).ln());
    let clipped = alphas_cumprod
        .iter()
        .rev()
        .take_while(|&&alpha| lambda(alpha) < lambda_min_clipped)
        .count();
    alphas_cumprod.len() - clipped
}

/// DPM-Solver's layout: `steps + 1` points with the lowest dropped, highest first.
fn dpm_timesteps(
    spacing: TimestepSpacing,
    train: usize,
    last: usize,
    steps: usize,
    offset: usize,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => (1..=steps)
            .rev()
            .map(|i| round_half_even((last as f64 - 1.0) * i as f64 / steps as f64))
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (last / (steps + 1)) as i64;
            (1..=steps as i64)
                .rev()
                .map(|i| i * ratio + offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps)
                .map(|i| round_half_even(last as f64 - i as f64 * ratio) - 1)
                .collect()
        }
    }
}
