//! The diffusion schedulers of diffusers that the unCLIP pipeline can step with: PNDM (the paper's), DDIM and
//! DPM-Solver++ (multistep). Each reads diffusers' `scheduler_config.json` with its own defaults, as
//! diffusers' `from_config` does, so one model folder's noise schedule drives any of the three.
//!
//! A scheduler owns its timesteps and is called once per model evaluation, in order: `step` takes the model's
//! output for the current timestep and the current sample and returns the next sample. The coefficients are
//! computed in f64 on the host and applied as scalar multiplies, so every backend steps alike.

mod ddim;
mod dpm_solver;
mod noise;
mod pndm;

pub use ddim::{Ddim, DdimConfig};
pub use dpm_solver::{DpmSolver, DpmSolverConfig};
pub use noise::{BetaSchedule, NoiseConfig, Prediction, TimestepSpacing};
pub use pndm::{Pndm, PndmConfig};

use burn::prelude::*;

/// Why a scheduler cannot be made or stepped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the scheduler configuration is not valid JSON (or JSON5): {0}")]
    Json(String),
    #[error(
        "the scheduler configuration asks for {field} = {value}, which this scheduler does not support"
    )]
    Unsupported { field: &'static str, value: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the scheduler was stepped {calls} times, but its {steps} timesteps take {steps} calls"
    )]
    PastTheEnd { calls: usize, steps: usize },
}

/// The timestep of model call `call`, or the error of one call too many.
fn timestep_at(timesteps: &[i64], call: usize) -> Result<i64, SchedulerError> {
    timesteps
        .get(call)
        .copied()
        .ok_or(SchedulerError::PastTheEnd {
            calls: call + 1,
            steps: timesteps.len(),
        })
}

/// Which scheduler steps the latents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Pndm,
    Ddim,
    DpmSolver,
}

/// One of the schedulers, made for a number of inference steps.
#[derive(Debug)]
pub enum Scheduler<B: Backend> {
    Pndm(Pndm<B>),
    Ddim(Ddim),
    DpmSolver(DpmSolver<B>),
}

impl<B: Backend> Scheduler<B> {
    /// `kind` configured from the text of a `scheduler_config.json` (written for any of the three), for
    /// `steps` inference steps.
    pub fn from_config_json(
        kind: SchedulerKind,
        json: &str,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        Ok(match kind {
            SchedulerKind::Pndm => Self::Pndm(Pndm::new(&read_config(json)?, steps)?),
            SchedulerKind::Ddim => Self::Ddim(Ddim::new(&read_config(json)?, steps)?),
            SchedulerKind::DpmSolver => {
                Self::DpmSolver(DpmSolver::new(&read_config(json)?, steps)?)
            }
        })
    }

    /// The timestep of every model call, in order.
    pub fn timesteps(&self) -> &[i64] {
        match self {
            Self::Pndm(s) => s.timesteps(),
            Self::Ddim(s) => s.timesteps(),
            Self::DpmSolver(s) => s.timesteps(),
        }
    }

    /// The next sample from the model's output at the current call's timestep.
    pub fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        sample: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, SchedulerError> {
        match self {
            Self::Pndm(s) => s.step(model_output, sample),
            Self::Ddim(s) => s.step(model_output, sample).map(|step| step.prev_sample),
            Self::DpmSolver(s) => s.step(model_output, sample),
        }
    }
}

/// A configuration from `scheduler_config.json`. diffusers writes it with Python's `json`, which spells
/// non-finite numbers as `-Infinity` and `NaN` (JSON5 reads them; they arrive as `null`), and lists under
/// `_use_default_values` the fields that were left at the writing class's defaults: as diffusers'
/// `from_config` does, those are dropped, so that another scheduler read from the file takes its own.
pub fn read_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, SchedulerError> {
    let mut value: serde_json::Value =
        json5::from_str(json).map_err(|e| SchedulerError::Json(e.to_string()))?;
    if let Some(fields) = value.as_object_mut() {
        let defaults: Vec<String> = fields
            .get("_use_default_values")
            .and_then(|v| v.as_array())
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for name in defaults {
            fields.remove(&name);
        }
    }
    serde_json::from_value(value).map_err(|e| SchedulerError::Json(e.to_string()))
}
