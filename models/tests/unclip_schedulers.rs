//! Parity of the diffusion schedulers with diffusers (`tests/data/unclip/schedulers`, written by
//! `make_scheduler_fixtures.py` there): for each configuration, the timesteps and every sample stepped to from
//! the same model outputs, within 1e-4 of the largest value (diffusers computes its schedule in f32, this port
//! in f64).

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::unclip::schedulers::{Ddim, Scheduler, SchedulerError, SchedulerKind};
use s2v_tests::{checkout, max_relative_error, read_values};

const SHAPE: [usize; 4] = [1, 4, 4, 4];
const RELATIVE_TOLERANCE: f32 = 1e-4;

struct Case {
    config: String,
    timesteps: Vec<i64>,
    outputs: Vec<Tensor<Flex, 4>>,
    samples: Vec<Vec<f32>>,
}

fn case(name: &str) -> Case {
    let dir = checkout().join("tests/data/unclip/schedulers").join(name);
    let per_call = SHAPE.iter().product::<usize>();
    let split = |values: Vec<f32>| -> Vec<Vec<f32>> {
        values.chunks(per_call).map(<[f32]>::to_vec).collect()
    };
    Case {
        config: std::fs::read_to_string(dir.join("scheduler_config.json")).unwrap(),
        timesteps: read_values(&dir.join("timesteps.npy"))
            .into_iter()
            .map(|t| t as i64)
            .collect(),
        outputs: split(read_values(&dir.join("model_outputs.npy")))
            .into_iter()
            .map(tensor)
            .collect(),
        samples: split(read_values(&dir.join("samples.npy"))),
    }
}

fn tensor(values: Vec<f32>) -> Tensor<Flex, 4> {
    Tensor::from_data(TensorData::new(values, SHAPE), &Default::default())
}

fn values(tensor: &Tensor<Flex, 4>) -> Vec<f32> {
    tensor.clone().into_data().to_vec().unwrap()
}

/// Steps `kind` through the case as diffusers did and compares every sample.
fn check(kind: SchedulerKind, name: &str) {
    let case = case(name);
    let mut scheduler =
        Scheduler::<Flex>::from_config_json(kind, &case.config, steps_of(name)).unwrap();
    assert_eq!(scheduler.timesteps(), case.timesteps, "{name}: timesteps");
    let mut sample = tensor(case.samples[0].clone());
    for (call, output) in case.outputs.iter().enumerate() {
        sample = scheduler.step(output.clone(), sample).unwrap();
        let error = max_relative_error(&values(&sample), &case.samples[call + 1]);
        assert!(
            error < RELATIVE_TOLERANCE,
            "{name}: call {call} (timestep {}) is off by {error} relative",
            case.timesteps[call]
        );
    }
    // One call too many is an error, not a panic.
    let extra = scheduler.step(case.outputs[0].clone(), sample);
    assert!(matches!(extra, Err(SchedulerError::PastTheEnd { .. })));
}

/// The inference steps each case was made with (`make_scheduler_fixtures.py`).
fn steps_of(name: &str) -> usize {
    match name {
        "pndm_plms" | "ddim" | "dpm" => 6,
        "pndm_prk" | "ddim_trailing_clipped" => 5,
        "dpm_epsilon_16" => 16,
        _ => unreachable!("no case {name}"),
    }
}

#[test]
fn pndm_with_unclips_schedule_matches_diffusers() {
    check(SchedulerKind::Pndm, "pndm_plms");
}

#[test]
fn pndm_with_its_runge_kutta_warm_up_matches_diffusers() {
    check(SchedulerKind::Pndm, "pndm_prk");
}

#[test]
fn ddim_with_unclips_schedule_matches_diffusers() {
    check(SchedulerKind::Ddim, "ddim");
}

#[test]
fn ddim_trailing_and_clipped_matches_diffusers() {
    check(SchedulerKind::Ddim, "ddim_trailing_clipped");
}

#[test]
fn dpm_solver_with_unclips_schedule_matches_diffusers() {
    check(SchedulerKind::DpmSolver, "dpm");
}

#[test]
fn dpm_solver_over_sixteen_leading_steps_matches_diffusers() {
    check(SchedulerKind::DpmSolver, "dpm_epsilon_16");
}

#[test]
fn ddims_clean_estimate_matches_diffusers() {
    let dir = checkout().join("tests/data/unclip/schedulers/ddim");
    let case = case("ddim");
    let originals = read_values(&dir.join("pred_original_samples.npy"));
    let config = json5_config(&case.config);
    let mut ddim = Ddim::new(&config, 6).unwrap();
    let mut sample = tensor(case.samples[0].clone());
    for (call, (output, expected)) in case.outputs.iter().zip(originals.chunks(64)).enumerate() {
        let step = ddim.step(output.clone(), sample).unwrap();
        let error = max_relative_error(&values(&step.pred_original_sample), expected);
        assert!(error < RELATIVE_TOLERANCE, "call {call}: {error}");
        sample = step.prev_sample;
    }
}

fn json5_config(text: &str) -> s2v_models::unclip::schedulers::DdimConfig {
    s2v_models::unclip::schedulers::read_config(text).unwrap()
}

#[test]
fn one_models_schedule_drives_every_scheduler() {
    // PNDM's configuration read as DDIM's and DPM-Solver's, as diffusers' `from_config` does: the noise
    // schedule and spacing carry over, each scheduler's own fields take its defaults.
    let pndm = case("pndm_plms").config;
    let ddim = Scheduler::<Flex>::from_config_json(SchedulerKind::Ddim, &pndm, 6).unwrap();
    assert_eq!(ddim.timesteps(), [831, 665, 499, 333, 167, 1]);
    let dpm = Scheduler::<Flex>::from_config_json(SchedulerKind::DpmSolver, &pndm, 6).unwrap();
    assert_eq!(dpm.timesteps(), [999, 832, 666, 500, 333, 166]);
}

#[test]
fn what_the_port_does_not_implement_is_refused_by_name() {
    for (kind, config, field) in [
        (
            SchedulerKind::DpmSolver,
            r#"{"use_karras_sigmas": true}"#,
            "use_karras_sigmas",
        ),
        (
            SchedulerKind::DpmSolver,
            r#"{"algorithm_type": "sde-dpmsolver++"}"#,
            "algorithm_type",
        ),
        (
            SchedulerKind::DpmSolver,
            r#"{"solver_order": 3}"#,
            "solver_order",
        ),
        (
            SchedulerKind::Ddim,
            r#"{"thresholding": true}"#,
            "thresholding",
        ),
        (
            SchedulerKind::Pndm,
            r#"{"prediction_type": "sample"}"#,
            "prediction_type",
        ),
    ] {
        let error = Scheduler::<Flex>::from_config_json(kind, config, 10).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
    let error = Scheduler::<Flex>::from_config_json(SchedulerKind::Ddim, "{beta_schedule:", 10)
        .unwrap_err();
    assert!(matches!(error, SchedulerError::Json(_)), "{error}");
    let error = Scheduler::<Flex>::from_config_json(
        SchedulerKind::Ddim,
        r#"{"beta_schedule": "cubic"}"#,
        10,
    )
    .unwrap_err();
    assert!(error.to_string().contains("cubic"), "{error}");
    for steps in [0, 1001] {
        assert!(Scheduler::<Flex>::from_config_json(SchedulerKind::Pndm, "{}", steps).is_err());
    }
}
