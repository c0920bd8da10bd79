//! The published network sizes, built with random weights: shapes and parameter counts as PyTorch counts them.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::*;

type B = Flex;

#[test]
fn published_audio_encoder_is_resnet18_with_a_2048_fc() {
    let device = Default::default();
    let encoder = AudioEncoder::<B>::init(&AudioEncoderConfig::published(), &device).unwrap();
    // Parameters only (batch-norm statistics are buffers in PyTorch too).
    assert_eq!(parameter_count(&encoder), 12_220_864);
    let out = encoder.forward(Tensor::random(
        [1, 1, 257, 1004],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    ));
    assert_eq!(out.dims(), [1, 2048]);
    assert!(
        out.into_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| *v >= 0.0),
        "the output passes a ReLU"
    );
}

#[test]
fn published_image_encoder_is_resnet50_without_classifier() {
    let device = Default::default();
    let encoder = ImageEncoder::<B>::init(&ImageEncoderConfig::published(), &device).unwrap();
    // torchvision's 25,557,032 less the 2048 x 1000 fc and its bias.
    assert_eq!(parameter_count(&encoder), 23_508_032);
    let out = encoder.forward(Tensor::random(
        [1, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    ));
    assert_eq!(out.dims(), [1, 2048]);
}

#[test]
fn published_generator_is_icgan_biggan_128() {
    let device = Default::default();
    let config = GeneratorConfig::published_128();
    assert_eq!(
        (config.resolution(), config.dim_z(), config.z_chunk),
        (128, 120, 20)
    );
    assert_eq!(config.block_out, vec![1536, 768, 384, 192, 96]);
    assert_eq!(config.attention, vec![false, false, false, true, false]);
    let generator = Generator::<B>::init(&config, &device).unwrap();
    // The published checkpoint also carries BigGAN's unused 1000 x 128 class embedding, which is never loaded.
    let (classes, dim) = config.unused_class_embedding.unwrap();
    assert_eq!(parameter_count(&generator) + classes * dim, 77_160_132);
    let z = Tensor::random(
        [1, 120],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let f = Tensor::random(
        [1, 2048],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let images = generator.forward(z, f);
    assert_eq!(images.dims(), [1, 3, 128, 128]);
    let values = images.into_data().into_vec::<f32>().unwrap();
    assert!(
        values
            .iter()
            .all(|v| v.is_finite() && (-1.0..=1.0).contains(v))
    );
}

#[test]
fn generator_architectures_for_64_and_256_pixels() {
    for (resolution, blocks) in [(64, 4), (256, 6)] {
        let config = GeneratorConfig::biggan(4, resolution, 120, 16, &[resolution / 2]);
        assert_eq!(config.blocks(), blocks);
        assert_eq!(config.resolution(), resolution);
        let generator = Generator::<B>::init(&config, &Default::default()).unwrap();
        let device = Default::default();
        let dim_z = config.dim_z();
        let out = generator.forward(
            Tensor::zeros([2, dim_z], &device),
            Tensor::ones([2, 2048], &device),
        );
        assert_eq!(out.dims(), [2, 3, resolution, resolution]);
    }
}
