//! The diffusion runtime on the tiny converted Stable unCLIP model: its pictures are the pipeline's own for
//! the same seed, previews come before each picture, a request that arrives mid-way shares the UNet calls of
//! the one already denoising, and requests it cannot serve are refused by name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::save_native;
use s2v_models::unclip::convert::{ConvertedUnclip, convert_unclip};
use s2v_models::unclip::pipeline::{Sampling, seeded_noise};
use s2v_models::unclip::schedulers::SchedulerKind;
use s2v_models::{AudioEncoder, AudioEncoderConfig, NetworkModule};
use s2v_serving::device::OnBackend;
use s2v_serving::diffusion::StartDiffusionRuntime;
use s2v_serving::{
    GeneratedImage, GeneratorRuntime, ImageResult, InvalidRequest, PreviewStep, RuntimeConfig,
    SubmitError,
};
use s2v_shared::wire::{DiffusionControls, GenerationRequest, ModelKind};
use s2v_tests::tiny_unclip_folder;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const WIDTH: usize = 6;
const STEPS: usize = 3;

/// The tiny networks converted as `s2v convert-unclip` does, with a 6-d audio encoder.
fn tiny_converted(root: &Path) -> PathBuf {
    let config = AudioEncoderConfig::narrow_sound2vision(WIDTH);
    let encoder = AudioEncoder::<Flex>::init(&config, &Default::default()).unwrap();
    let encoder_path = root.join("sound2vision.safetensors");
    save_native(&encoder, &encoder_path, false).unwrap();
    let out = root.join("converted");
    convert_unclip::<Flex>(
        &tiny_unclip_folder(root),
        &encoder_path,
        &out,
        &Default::default(),
    )
    .unwrap();
    out
}

const CONTROLS: DiffusionControls = DiffusionControls {
    steps: STEPS,
    max_steps: 50,
    guidance: 10.0,
    max_guidance: 30.0,
    preview_every: 1,
};

fn runtime(model: &Path) -> GeneratorRuntime {
    StartDiffusionRuntime {
        model: ConvertedUnclip::open(model).unwrap(),
        config: RuntimeConfig {
            queue_capacity: 8,
            max_batch: 4,
            batch_wait: Duration::from_millis(20),
        },
        controls: CONTROLS,
        scheduler: SchedulerKind::Pndm,
    }
    .run::<Flex>(Default::default())
    .unwrap()
}

fn embedding(seed: u32) -> Vec<f32> {
    (0..WIDTH)
        .map(|i| ((i as u32 * 7 + seed * 13) % 11) as f32 / 5.0 - 1.0)
        .collect()
}

fn request(latent: Vec<f32>, seed: u64, count: usize) -> GenerationRequest {
    GenerationRequest {
        latent,
        seed,
        count,
        truncation: None,
        steps: None,
        guidance: None,
    }
}

/// Every event of a request until its `count` finished images: (previews, finished images).
fn drain(
    receiver: &mut UnboundedReceiver<ImageResult>,
    count: usize,
) -> (Vec<GeneratedImage>, Vec<GeneratedImage>) {
    let (mut previews, mut finished) = (Vec::new(), Vec::new());
    while finished.len() < count {
        let image = receiver
            .blocking_recv()
            .expect("an event")
            .expect("no error");
        match image.preview {
            Some(_) => previews.push(image),
            None => finished.push(image),
        }
    }
    (previews, finished)
}

/// The pictures `UnclipPipeline::generate` draws for `count` copies of `latent` from `seed`, as 8-bit RGB.
fn drawn_directly(model: &Path, latent: &[f32], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let device = Default::default();
    let converted = ConvertedUnclip::open(model).unwrap();
    let pipeline = converted.load::<Flex>(&device).unwrap();
    let manifest = &converted.manifest;
    let (c, side) = (manifest.latent_channels, manifest.sample_size);
    let (latents, image_noise) = seeded_noise(seed, count, [c, side, side], WIDTH);
    let embeddings: Vec<f32> = (0..count).flat_map(|_| latent.iter().copied()).collect();
    let pixels = pipeline
        .generate(
            Tensor::from_data(TensorData::new(embeddings, [count, WIDTH]), &device),
            Tensor::from_data(TensorData::new(latents, [count, c, side, side]), &device),
            Tensor::from_data(TensorData::new(image_noise, [count, WIDTH]), &device),
            &Sampling {
                steps: STEPS,
                ..Sampling::default()
            },
            |_| {},
        )
        .unwrap();
    let [_, _, h, w] = pixels.dims();
    let values: Vec<f32> = pixels.into_data().to_vec().unwrap();
    values
        .chunks(3 * h * w)
        .map(|chw| {
            let signed: Vec<f32> = chw.iter().map(|v| v * 2.0 - 1.0).collect();
            s2v_serving::pictures::to_rgb8(&signed, h, w)
        })
        .collect()
}

fn assert_close(served: &GeneratedImage, direct: &[u8], what: &str) {
    assert_eq!(served.rgb.len(), direct.len(), "{what}");
    let largest = served
        .rgb
        .iter()
        .zip(direct)
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    assert!(largest <= Some(1), "{what}: differs by {largest:?}");
}

#[test]
fn pictures_match_the_pipeline_and_a_late_request_shares_the_unet_calls() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_converted(dir.path());
    let runtime = runtime(&model);
    assert_eq!(runtime.kind(), ModelKind::Diffusion(CONTROLS));
    assert_eq!((runtime.feature_dim(), runtime.resolution()), (WIDTH, 16));

    let (tx, mut first) = unbounded_channel();
    runtime.submit(request(embedding(1), 7, 2), tx).unwrap();
    // Join once the first request has taken a step.
    let early = first.blocking_recv().unwrap().unwrap();
    assert_eq!(
        early.preview,
        Some(PreviewStep {
            step: 1,
            steps: STEPS + 1
        })
    );
    let (tx, mut late) = unbounded_channel();
    runtime.submit(request(embedding(2), 9, 1), tx).unwrap();

    let (mut previews, finished) = drain(&mut first, 2);
    previews.insert(0, early);
    let (late_previews, late_finished) = drain(&mut late, 1);

    // PNDM's STEPS steps take STEPS + 1 UNet calls; a preview after each but the last, for each picture.
    let steps_seen: Vec<(usize, usize)> = previews
        .iter()
        .map(|p| (p.index, p.preview.unwrap().step))
        .collect();
    assert_eq!(
        steps_seen,
        vec![(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]
    );
    assert_eq!(late_previews.len(), STEPS);
    assert!(previews.iter().all(|p| (p.width, p.height) == (16, 16)));
    assert_eq!(
        finished.iter().map(|i| i.index).collect::<Vec<_>>(),
        vec![0, 1]
    );

    let direct = drawn_directly(&model, &embedding(1), 7, 2);
    assert_close(&finished[0], &direct[0], "first request, image 0");
    assert_close(&finished[1], &direct[1], "first request, image 1");
    assert_ne!(
        finished[0].rgb, finished[1].rgb,
        "two draws of one sound differ"
    );
    let direct = drawn_directly(&model, &embedding(2), 9, 1);
    assert_close(&late_finished[0], &direct[0], "the late request");

    // The late request's first calls rode with the first request's last ones: UNet calls of three pictures.
    let stats = runtime.stats();
    let passes: Vec<u64> = stats
        .batch_sizes
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert!(passes[2] > 0, "no call held both requests: {passes:?}");
}

#[test]
fn requests_it_cannot_serve_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(&tiny_converted(dir.path()));
    let (tx, _rx) = unbounded_channel();
    let refused = |request: GenerationRequest| match runtime.submit(request, tx.clone()) {
        Err(SubmitError::Invalid(why)) => why,
        other => panic!("not refused: {other:?}"),
    };
    let ok = request(embedding(1), 1, 1);
    assert_eq!(
        refused(GenerationRequest {
            truncation: Some(0.5),
            ..ok.clone()
        }),
        InvalidRequest::NotOffered("truncation")
    );
    assert!(matches!(
        refused(GenerationRequest {
            steps: Some(0),
            ..ok.clone()
        }),
        InvalidRequest::Steps(_)
    ));
    assert!(matches!(
        refused(GenerationRequest {
            steps: Some(51),
            ..ok.clone()
        }),
        InvalidRequest::Steps(_)
    ));
    assert_eq!(
        refused(GenerationRequest {
            guidance: Some(f32::NAN),
            ..ok.clone()
        }),
        InvalidRequest::Guidance(30.0)
    );
    assert_eq!(
        refused(GenerationRequest {
            latent: vec![1.0; 5],
            ..ok.clone()
        }),
        InvalidRequest::LatentLength {
            expected: WIDTH,
            found: 5
        }
    );
    // Steps and guidance of its own are taken.
    let (tx, mut rx) = unbounded_channel();
    runtime
        .submit(
            GenerationRequest {
                steps: Some(5),
                guidance: Some(1.0),
                ..ok
            },
            tx,
        )
        .unwrap();
    let (previews, finished) = drain(&mut rx, 1);
    assert_eq!(
        previews.last().unwrap().preview,
        Some(PreviewStep { step: 5, steps: 6 })
    );
    assert_eq!(finished.len(), 1);
}
