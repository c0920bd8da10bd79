//! `convert_unclip` on a tiny diffusers Stable unCLIP folder assembled from the fixtures: what it keeps, the
//! empty prompt's states it computes, the pipeline it loads back (f16 weights against the f32 originals), and
//! the folders and encoders it refuses, each by name.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::save_native;
use s2v_models::unclip::convert::{
    ConvertedUnclip, FORMAT, MANIFEST, convert_unclip, folder_digest,
};
use s2v_models::unclip::pipeline::{PipelineDirs, Sampling, UnclipPipeline};
use s2v_models::unclip::schedulers::SchedulerKind;
use s2v_models::{AudioEncoder, AudioEncoderConfig, CheckpointError, NetworkModule};
use s2v_tests::{checkout, read_values, tiny_unclip_folder};

fn data(part: &str) -> PathBuf {
    checkout().join("tests/data/unclip").join(part)
}

/// A Sound2Vision-shaped audio encoder (with `fc2`) whose embedding is `width` wide.
fn audio_encoder(root: &Path, width: usize, fc2: bool) -> PathBuf {
    let config = AudioEncoderConfig {
        fc2,
        ..AudioEncoderConfig::narrow_sound2vision(width)
    };
    let encoder = AudioEncoder::<Flex>::init(&config, &Default::default()).unwrap();
    let path = root.join(format!("encoder-{width}-{fc2}.safetensors"));
    save_native(&encoder, &path, false).unwrap();
    path
}

fn input<const D: usize>(name: &str, shape: [usize; D]) -> Tensor<Flex, D> {
    let values = read_values(&data("pipeline").join(format!("{name}.npy")));
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn generate(pipeline: &UnclipPipeline<Flex>) -> Vec<f32> {
    let sampling = Sampling {
        steps: 3,
        guidance: 10.0,
        scheduler: SchedulerKind::Pndm,
        noise_level: 0,
    };
    pipeline
        .generate(
            input("embedding", [1, 6]),
            input("latents", [1, 4, 8, 8]),
            input("image_noise", [1, 6]),
            &sampling,
            |_| {},
        )
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn a_converted_model_keeps_what_serving_needs_and_draws_as_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let diffusers = tiny_unclip_folder(dir.path());
    let out = dir.path().join("converted");
    let manifest = convert_unclip::<Flex>(
        &diffusers,
        &audio_encoder(dir.path(), 6, true),
        &out,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(ConvertedUnclip::open(&out).unwrap().manifest, manifest);
    assert_eq!(
        (
            manifest.embedding_width,
            manifest.latent_channels,
            manifest.sample_size,
            manifest.vae_scale
        ),
        (6, 4, 8, 2)
    );
    // No tokenizer, no text encoder, no VAE encoder; weights in f16.
    assert!(!out.join("tokenizer").exists() && !out.join("text_encoder").exists());
    let vae = std::fs::read(out.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let vae = safetensors::SafeTensors::deserialize(&vae).unwrap();
    assert!(
        vae.names()
            .iter()
            .all(|n| n.starts_with("decoder.") || n.starts_with("post_quant_conv."))
    );
    assert!(
        vae.tensors()
            .iter()
            .all(|(_, view)| view.dtype() == safetensors::Dtype::F16)
    );

    // The empty prompt's states are transformers' own.
    let states = std::fs::read(out.join("text_states.safetensors")).unwrap();
    let states = safetensors::SafeTensors::deserialize(&states).unwrap();
    let view = states.tensor("text_states").unwrap();
    assert_eq!(view.shape(), [1, 8, 6]);
    let values: Vec<f32> = view
        .data()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected = read_values(&data("text_encoder/empty_prompt_states.npy"));
    let diff = values
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    assert!(diff < 1e-5, "{diff}");

    // Loaded back, it draws what the f32 original draws with the same states, up to f16's rounding.
    let converted = ConvertedUnclip::open(&out)
        .unwrap()
        .load::<Flex>(&Default::default())
        .unwrap();
    let (unet, vae, scheduler, normalizer, noising) = (
        diffusers.join("unet"),
        diffusers.join("vae"),
        diffusers.join("scheduler"),
        diffusers.join("image_normalizer"),
        diffusers.join("image_noising_scheduler"),
    );
    let dirs = PipelineDirs {
        unet: &unet,
        vae: &vae,
        scheduler: &scheduler,
        image_normalizer: &normalizer,
        image_noising_scheduler: &noising,
        fp16: false,
    };
    let states = Tensor::from_data(TensorData::new(expected, [1, 8, 6]), &Default::default());
    let original = UnclipPipeline::<Flex>::load(&dirs, states, &Default::default()).unwrap();
    let (a, b) = (generate(&converted), generate(&original));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 0.02, "pixels differ by {diff}");
}

#[test]
fn what_cannot_be_converted_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let diffusers = tiny_unclip_folder(dir.path());
    let convert = |encoder: &Path, out: &str| {
        convert_unclip::<Flex>(
            &diffusers,
            encoder,
            &dir.path().join(out),
            &Default::default(),
        )
    };
    // A Sound2Scene encoder (no fc2).
    let error = convert(&audio_encoder(dir.path(), 6, false), "a").unwrap_err();
    assert!(
        matches!(&error, CheckpointError::MissingTensor { tensor, .. } if tensor == "audnet.fc2.weight"),
        "{error}"
    );
    // An embedding the UNet cannot take.
    let error = convert(&audio_encoder(dir.path(), 5, true), "b").unwrap_err();
    assert!(error.to_string().contains("5-d embedding"), "{error}");
    // A folder without a text encoder.
    std::fs::remove_dir_all(diffusers.join("text_encoder")).unwrap();
    let error = convert(&audio_encoder(dir.path(), 6, true), "c").unwrap_err();
    assert!(error.to_string().contains("text_encoder"), "{error}");
}

#[test]
fn the_manifest_names_the_folders_digest_and_an_older_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let diffusers = tiny_unclip_folder(dir.path());
    let out = dir.path().join("converted");
    let encoder = audio_encoder(dir.path(), 6, true);
    let manifest = convert_unclip::<Flex>(&diffusers, &encoder, &out, &Default::default()).unwrap();
    assert_eq!(manifest.format, FORMAT);
    assert_eq!(manifest.content_digest, folder_digest(&out).unwrap());
    assert_eq!(manifest.content_digest.len(), 64);

    // Any change to a file changes the digest.
    let scheduler = out.join("scheduler/scheduler_config.json");
    let mut text = std::fs::read_to_string(&scheduler).unwrap();
    text.push(' ');
    std::fs::write(&scheduler, text).unwrap();
    assert_ne!(folder_digest(&out).unwrap(), manifest.content_digest);

    // A manifest of the first format (no digest) asks for the model to be converted again.
    let path = out.join(MANIFEST);
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    old["format"] = 1.into();
    old.as_object_mut().unwrap().remove("content_digest");
    std::fs::write(&path, old.to_string()).unwrap();
    let error = ConvertedUnclip::open(&out).unwrap_err().to_string();
    assert!(
        error.contains("format 1") && error.contains("convert the model again"),
        "{error}"
    );
}
