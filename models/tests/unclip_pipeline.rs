//! The whole unCLIP path against diffusers' `StableUnCLIPImg2ImgPipeline`, three PNDM steps to pixels on the
//! tiny UNet and VAE (`tests/data/unclip/pipeline`, written by `make_pipeline_fixture.py` there): a given
//! embedding, given text states, noise level 0, guidance 10; and the errors of inputs that do not fit.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::unclip::pipeline::{PipelineDirs, PipelineError, Sampling, UnclipPipeline};
use s2v_models::unclip::schedulers::SchedulerKind;
use s2v_tests::{checkout, max_relative_error, read_values};

const RELATIVE_TOLERANCE: f32 = 1e-4;

fn data(part: &str) -> std::path::PathBuf {
    checkout().join("tests/data/unclip").join(part)
}

fn input<const D: usize>(name: &str, shape: [usize; D]) -> Tensor<Flex, D> {
    let values = read_values(&data("pipeline").join(format!("{name}.npy")));
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn pipeline() -> UnclipPipeline<Flex> {
    let (unet, vae) = (data("unet"), data("vae"));
    let (scheduler, normalizer, noising) = (
        data("pipeline/scheduler"),
        data("pipeline/image_normalizer"),
        data("pipeline/image_noising_scheduler"),
    );
    let dirs = PipelineDirs {
        unet: &unet,
        vae: &vae,
        scheduler: &scheduler,
        image_normalizer: &normalizer,
        image_noising_scheduler: &noising,
        fp16: false,
    };
    UnclipPipeline::load(&dirs, input("text_states", [1, 5, 6]), &Default::default()).unwrap()
}

fn sampling() -> Sampling {
    Sampling {
        steps: 3,
        guidance: 10.0,
        scheduler: SchedulerKind::Pndm,
        noise_level: 0,
    }
}

#[test]
fn three_pndm_steps_to_pixels_match_diffusers() {
    let pipeline = pipeline();
    let mut last_latents = None;
    let mut calls = Vec::new();
    let pixels = pipeline
        .generate(
            input("embedding", [1, 6]),
            input("latents", [1, 4, 8, 8]),
            input("image_noise", [1, 6]),
            &sampling(),
            |progress| {
                calls.push((progress.call, progress.calls));
                last_latents = Some(progress.latents.clone());
            },
        )
        .unwrap();
    // PNDM without its warm-up: three steps take four model calls.
    assert_eq!(calls, [(0, 4), (1, 4), (2, 4), (3, 4)]);
    let latents: Vec<f32> = last_latents.unwrap().into_data().to_vec().unwrap();
    let expected = read_values(&data("pipeline/final_latents.npy"));
    let error = max_relative_error(&latents, &expected);
    assert!(
        error < RELATIVE_TOLERANCE,
        "latents: relative error {error}"
    );
    // diffusers returns pixels as [n, h, w, 3].
    let pixels: Vec<f32> = pixels.permute([0, 2, 3, 1]).into_data().to_vec().unwrap();
    let expected = read_values(&data("pipeline/pixels.npy"));
    let error = max_relative_error(&pixels, &expected);
    assert!(error < RELATIVE_TOLERANCE, "pixels: relative error {error}");
}

#[test]
fn inputs_that_do_not_fit_are_refused() {
    let pipeline = pipeline();
    let run = |embedding: Tensor<Flex, 2>, noise: Tensor<Flex, 2>, sampling: Sampling| {
        pipeline.generate(
            embedding,
            input("latents", [1, 4, 8, 8]),
            noise,
            &sampling,
            |_| {},
        )
    };
    let wide = Tensor::<Flex, 2>::zeros([1, 7], &Default::default());
    let error = run(wide.clone(), wide, sampling()).unwrap_err();
    assert!(matches!(error, PipelineError::Input(_)), "{error}");
    let nan = Tensor::<Flex, 2>::full([1, 6], f32::NAN, &Default::default());
    let error = run(nan, input("image_noise", [1, 6]), sampling()).unwrap_err();
    assert!(error.to_string().contains("NaN"), "{error}");
    let past = Sampling {
        noise_level: 1000,
        ..sampling()
    };
    let error = run(
        input("embedding", [1, 6]),
        input("image_noise", [1, 6]),
        past,
    )
    .unwrap_err();
    assert!(error.to_string().contains("noise level 1000"), "{error}");
    let no_steps = Sampling {
        steps: 0,
        ..sampling()
    };
    let error = run(
        input("embedding", [1, 6]),
        input("image_noise", [1, 6]),
        no_steps,
    )
    .unwrap_err();
    assert!(matches!(error, PipelineError::Scheduler(_)), "{error}");
}
