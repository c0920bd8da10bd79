//! The noise schedule every scheduler shares: the betas of the training process and what follows from them.

use serde::Deserialize;

use super::SchedulerError;

/// How the training betas were laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    /// Linear in the square root of beta (Stable Diffusion's).
    ScaledLinear,
    /// The cosine schedule of Nichol and Dhariwal, capped at 0.999.
    SquaredcosCapV2,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The noise.
    Epsilon,
    /// v = sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0 (Stable unCLIP 2.1's).
    VPrediction,
    /// The clean sample itself.
    Sample,
}

/// How inference timesteps are spread over the training ones (Lin et al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

/// The fields of `scheduler_config.json` that define the training process, with diffusers' defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NoiseConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Prediction,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: Prediction::Epsilon,
        }
    }
}

impl NoiseConfig {
    /// alpha_bar_t, the share of the signal left at each training timestep.
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>, SchedulerError> {
        let betas = self.betas()?;
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(SchedulerError::Invalid(
                "every beta must lie in [0, 1)".into(),
            ));
        }
        let mut product = 1.0;
        Ok(betas
            .iter()
            .map(|beta| {
                product *= 1.0 - beta;
                product
            })
            .collect())
    }

    fn betas(&self) -> Result<Vec<f64>, SchedulerError> {
        let n = self.num_train_timesteps;
        if n < 2 {
            return Err(SchedulerError::Invalid(format!(
                "num_train_timesteps is {n}; a schedule needs at least 2"
            )));
        }
        if let Some(betas) = &self.trained_betas {
            if betas.len() != n {
                return Err(SchedulerError::Invalid(format!(
                    "trained_betas has {} values for {n} training timesteps",
                    betas.len()
                )));
            }
            return Ok(betas.clone());
        }
        let linspace = |start: f64, end: f64| -> Vec<f64> {
            (0..n)
                .map(|i| start + (end - start) * i as f64 / (n - 1) as f64)
                .collect()
        };
        Ok(match self.beta_schedule {
            BetaSchedule::Linear => linspace(self.beta_start, self.beta_end),
            BetaSchedule::ScaledLinear => linspace(self.beta_start.sqrt(), self.beta_end.sqrt())
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
        })
    }
}

/// `steps` inference timesteps, highest first, as PNDM and DDIM lay them out (before PNDM's reordering):
/// `linspace` rounds evenly spaced points of [0, n - 1], `leading` takes multiples of n / steps from 0 and adds
/// the offset, `trailing` counts down from n - 1.
pub(super) fn spaced_timesteps(
    spacing: TimestepSpacing,
    train_timesteps: usize,
    steps: usize,
    offset: usize,
) -> Result<Vec<i64>, SchedulerError> {
    if steps == 0 || steps > train_timesteps {
        return Err(SchedulerError::Invalid(format!(
            "{steps} inference steps: there must be from 1 to {train_timesteps} (the training timesteps)"
        )));
    }
    let n = train_timesteps as f64;
    let mut timesteps: Vec<i64> = match spacing {
        TimestepSpacing::Linspace => (0..steps)
            .map(|i| {
                let fraction = if steps == 1 {
                    0.0
                } else {
                    i as f64 / (steps - 1) as f64
                };
                round_half_even((n - 1.0) * fraction)
            })
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (train_timesteps / steps) as i64;
            (0..steps as i64)
                .map(|i| i * ratio + offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = n / steps as f64;
            (0..steps)
                .map(|i| round_half_even(n - i as f64 * ratio) - 1)
                .rev()
                .collect()
        }
    };
    timesteps.reverse();
    Ok(timesteps)
}

/// numpy's `round`: halves go to the even neighbour.
pub(super) fn round_half_even(value: f64) -> i64 {
    value.round_ties_even() as i64
}

/// alpha_bar at a timestep, or `final_alpha` below 0 (the step past the last one).
pub(super) fn alpha_at(alphas_cumprod: &[f64], timestep: i64, final_alpha: f64) -> f64 {
    usize::try_from(timestep)
        .ok()
        .and_then(|t| alphas_cumprod.get(t).copied())
        .unwrap_or(final_alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_are_laid_out_as_diffusers_lays_them() {
        use TimestepSpacing::*;
        assert_eq!(
            spaced_timesteps(Leading, 1000, 6, 1).unwrap(),
            [831, 665, 499, 333, 167, 1]
        );
        assert_eq!(
            spaced_timesteps(Trailing, 1000, 5, 0).unwrap(),
            [999, 799, 599, 399, 199]
        );
        assert_eq!(
            spaced_timesteps(Linspace, 1000, 4, 0).unwrap(),
            [999, 666, 333, 0]
        );
        assert!(spaced_timesteps(Leading, 1000, 0, 0).is_err());
        assert!(spaced_timesteps(Leading, 10, 11, 0).is_err());
    }

    #[test]
    fn a_schedule_that_is_not_one_is_an_error() {
        let config = NoiseConfig {
            trained_betas: Some(vec![0.1, 1.5]),
            num_train_timesteps: 2,
            ..NoiseConfig::default()
        };
        assert!(config.alphas_cumprod().is_err());
        let short = NoiseConfig {
            trained_betas: Some(vec![0.1]),
            num_train_timesteps: 2,
            ..NoiseConfig::default()
        };
        assert!(short.alphas_cumprod().is_err());
    }
}
