//! The image-feature cache: each picture is encoded once per encoder, a cached row is the row the encoder
//! gives, and neither another encoder nor a changed picture ever reads a stale one.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::nn::LinearConfig;
use burn::prelude::*;
use s2v_models::checkpoint::TorchStateDict;
use s2v_models::image_encoder::{ImageEncoderConfig, ResNetImageEncoderConfig};
use s2v_models::{FromTorch, ImageEncoder, NetworkModule};
use s2v_train::image_features::{FrozenFeatures, weights_digest};

type B = Flex;

fn encoder(seed: u64) -> ImageEncoder<B> {
    let device = Default::default();
    B::seed(&device, seed);
    let config = ImageEncoderConfig::ResNet(ResNetImageEncoderConfig {
        in_channels: 3,
        stem_width: 8,
        stage_widths: vec![8, 8, 8, 8],
        stage_outputs: vec![8, 8, 8, 12],
        blocks_per_stage: vec![1, 1, 1, 1],
        input_size: 32,
    });
    ImageEncoder::init(&config, &device).unwrap()
}

/// Three pictures that differ in colour and shape, so that their features differ.
fn pictures(dir: &Path) -> Vec<PathBuf> {
    [
        ([200, 30, 30], true),
        ([20, 180, 40], false),
        ([30, 40, 220], true),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (colour, square))| {
        let path = dir.join(format!("picture-{i}.png"));
        common::picture(&path, colour, square);
        path
    })
    .collect()
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_second_pass_reads_every_row_from_the_cache_unchanged() {
    let (dir, device) = (tempfile::tempdir().unwrap(), Default::default());
    let files = pictures(dir.path());
    let cache = dir.path().join("cache");
    let network = encoder(1);

    let mut first = FrozenFeatures::cached(&network, &cache, &device);
    let plain = first.of(&files, false).unwrap();
    let mirrored = first.of(&files, true).unwrap();
    assert_eq!(first.encoded(), 6);
    assert_ne!(plain, mirrored, "a mirror image is a row of its own");
    assert_eq!(cache_files(&cache).len(), 1);

    let mut second = FrozenFeatures::cached(&network, &cache, &device);
    assert_eq!(second.of(&files, false).unwrap(), plain);
    assert_eq!(second.of(&files, true).unwrap(), mirrored);
    assert_eq!(second.encoded(), 0, "everything came from the cache");
    // In another order, still each picture's own row.
    let reversed: Vec<PathBuf> = files.iter().rev().cloned().collect();
    let rows = second.of(&reversed, false).unwrap();
    assert_eq!(rows, plain.iter().rev().cloned().collect::<Vec<_>>());
}

#[test]
fn another_encoder_or_a_changed_picture_is_encoded_afresh() {
    let (dir, device) = (tempfile::tempdir().unwrap(), Default::default());
    let files = pictures(dir.path());
    let cache = dir.path().join("cache");
    let (one, other) = (encoder(1), encoder(2));
    assert_ne!(weights_digest(&one), weights_digest(&other));

    let before = FrozenFeatures::cached(&one, &cache, &device)
        .of(&files, false)
        .unwrap();
    let mut by_other = FrozenFeatures::cached(&other, &cache, &device);
    let other_rows = by_other.of(&files, false).unwrap();
    assert_eq!(by_other.encoded(), 3);
    assert_ne!(other_rows, before);

    // The first picture redrawn: only it is encoded again, and its row is the new picture's.
    common::picture(&files[0], [250, 250, 20], false);
    let mut again = FrozenFeatures::cached(&one, &cache, &device);
    let after = again.of(&files, false).unwrap();
    assert_eq!(again.encoded(), 1);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);
}

#[test]
fn the_digest_is_the_weights_not_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let network = encoder(3);
    let file = dir.path().join("encoder.safetensors");
    s2v_models::checkpoint::save_native(&network, &file, false).unwrap();
    let reloaded: ImageEncoder<B> =
        s2v_serving::networks::load_network(Some(&file), &Default::default()).unwrap();
    assert_eq!(weights_digest(&reloaded), weights_digest(&network));
}

#[test]
fn an_unreadable_cache_is_replaced_not_fatal() {
    let (dir, device) = (tempfile::tempdir().unwrap(), Default::default());
    let files = pictures(dir.path());
    let cache = dir.path().join("cache");
    let network = encoder(4);
    let expected = FrozenFeatures::cached(&network, &cache, &device)
        .of(&files, false)
        .unwrap();
    let [file] = cache_files(&cache).try_into().unwrap();
    std::fs::write(&file, b"not a safetensors file").unwrap();

    let mut recovering = FrozenFeatures::cached(&network, &cache, &device);
    assert_eq!(recovering.of(&files, false).unwrap(), expected);
    assert_eq!(recovering.encoded(), 3);
    let mut healed = FrozenFeatures::cached(&network, &cache, &device);
    healed.of(&files, false).unwrap();
    assert_eq!(healed.encoded(), 0, "the rewritten cache is read");
}

#[test]
fn a_missing_picture_is_named() {
    let (dir, device) = (tempfile::tempdir().unwrap(), Default::default());
    let network = encoder(5);
    let missing = dir.path().join("no-such-picture.png");
    let error = FrozenFeatures::cached(&network, &dir.path().join("cache"), &device)
        .of(&[missing], false)
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("no-such-picture.png"),
        "{error:#}"
    );
}

/// The tiny EfficientNet-Lite of the parity fixtures (40-d pooled features) with a 4-d projection drawn from
/// `seed`, or without one.
fn lite(projection_seed: Option<u64>) -> ImageEncoder<B> {
    let device = Default::default();
    let path = s2v_tests::checkout().join("tests/data/efficientnet_lite/efficientnet_lite.pth");
    let backbone = ImageEncoder::from_torch(TorchStateDict::read(&path).unwrap(), &device).unwrap();
    match projection_seed {
        None => backbone,
        Some(seed) => {
            B::seed(&device, seed);
            let projection = LinearConfig::new(40, 4).init(&device);
            backbone.with_projection(projection).unwrap()
        }
    }
}

fn rows_tensor(rows: &[Vec<f32>]) -> Tensor<B, 2> {
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), &Default::default())
}

#[test]
fn the_cache_holds_features_before_the_projection_which_is_applied_as_they_are_read() {
    let (dir, device) = (tempfile::tempdir().unwrap(), Default::default());
    let files = pictures(dir.path());
    let cache = dir.path().join("cache");

    let one = lite(Some(1));
    let mut first = FrozenFeatures::cached(&one, &cache, &device);
    let projected = first.of(&files, false).unwrap();
    assert_eq!(first.encoded(), 3);
    assert!(projected.iter().all(|row| row.len() == 4));

    // The backbone alone, and the backbone under another projection, find every picture in that cache.
    let backbone = lite(None);
    let mut plain = FrozenFeatures::cached(&backbone, &cache, &device);
    let pooled = plain.of(&files, false).unwrap();
    assert_eq!(plain.encoded(), 0);
    assert!(pooled.iter().all(|row| row.len() == 40));
    let other = lite(Some(2));
    let mut reprojected = FrozenFeatures::cached(&other, &cache, &device);
    let other_rows = reprojected.of(&files, false).unwrap();
    assert_eq!(reprojected.encoded(), 0);
    assert_ne!(other_rows, projected);

    // Each encoder's rows are its own projection of the cached features.
    for (encoder, rows) in [(&one, &projected), (&other, &other_rows)] {
        let expected = encoder.projection().unwrap().forward(rows_tensor(&pooled));
        rows_tensor(rows).into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::rel_abs(1e-5, 1e-6),
        );
    }
}
