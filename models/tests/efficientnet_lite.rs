//! Parity of the EfficientNet-Lite image encoder with the numpy reference (`tests/data/efficientnet_lite`,
//! written by `make_fixture.py` there: seeded random weights under `efficientnet_lite_pytorch`'s names, and the
//! reference's features of two pictures), its import from a PyTorch state dict, and its native round trip.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::{TorchStateDict, load_native, to_native_bytes};
use s2v_models::{FromTorch, ImageEncoder, ImageEncoderConfig, NetworkKind, NetworkModule};
use s2v_tests::{checkout, max_abs_diff, read_values};

/// The reference runs in f64; burn in f32 through 23 layers whose activations reach ReLU6's clip.
const TOLERANCE: f32 = 2e-5;

fn fixture(name: &str) -> std::path::PathBuf {
    checkout().join("tests/data/efficientnet_lite").join(name)
}

fn imported() -> ImageEncoder<Flex> {
    let sd = TorchStateDict::read(&fixture("efficientnet_lite.pth")).unwrap();
    assert_eq!(NetworkKind::detect(&sd), Some(NetworkKind::ImageEncoder));
    ImageEncoder::from_torch(sd, &Default::default()).unwrap()
}

fn features(encoder: &ImageEncoder<Flex>) -> Vec<f32> {
    let input = read_values(&fixture("input.npy"));
    let images = Tensor::from_data(TensorData::new(input, [2, 3, 40, 40]), &Default::default());
    encoder.forward(images).into_data().to_vec().unwrap()
}

#[test]
fn features_match_the_reference() {
    let encoder = imported();
    let expected = read_values(&fixture("features.npy"));
    let diff = max_abs_diff(&features(&encoder), &expected);
    assert!(diff < TOLERANCE, "max |burn - reference| = {diff}");
}

#[test]
fn the_layout_is_read_off_the_shapes() {
    let ImageEncoderConfig::EfficientNetLite(config) = imported().config() else {
        panic!("not read as an EfficientNet-Lite");
    };
    assert_eq!((config.stem_width, config.head_width), (8, 40));
    let strides: Vec<usize> = config.blocks.iter().map(|b| b.stride).collect();
    assert_eq!(strides, [1, 2, 1, 2, 2, 1, 1, 2, 1, 1]);
    let kernels: Vec<usize> = config.blocks.iter().map(|b| b.kernel).collect();
    assert_eq!(kernels, [3, 3, 3, 5, 3, 3, 5, 5, 5, 3]);
    // Only the first block keeps its width without an expansion.
    assert_eq!(config.blocks[0].expanded, config.blocks[0].c_in);
    assert!(config.blocks[1..].iter().all(|b| b.expanded == 2 * b.c_in));
    // A checkpoint does not say its resolution: EfficientNet-B0's unless it is a known variant.
    assert_eq!(config.input_size, 224);
}

#[test]
fn it_round_trips_through_the_native_format() {
    let encoder = imported();
    let bytes = to_native_bytes(&encoder, false).unwrap();
    let loaded: ImageEncoder<Flex> = load_native(&bytes, &Default::default()).unwrap();
    assert_eq!(loaded.config(), encoder.config());
    assert_eq!(features(&loaded), features(&encoder));
}

#[test]
fn a_missing_block_tensor_is_named() {
    let mut tensors =
        s2v_models::checkpoint::read_torch_tensors(&fixture("efficientnet_lite.pth")).unwrap();
    tensors.remove("_blocks.3._bn1.running_var");
    let error = ImageEncoder::<Flex>::from_torch(
        TorchStateDict::from_tensors(tensors),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("_blocks.3._bn1.running_var"), "{error}");
}

#[test]
fn a_projection_maps_the_features_travels_in_checkpoints_and_splits_off() {
    use burn::nn::LinearConfig;
    let device = Default::default();
    let plain = features(&imported());
    let projection = LinearConfig::new(40, 3).init::<Flex>(&device);
    let weight: Vec<f32> = projection.weight.val().into_data().to_vec().unwrap();
    let bias: Vec<f32> = projection
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .to_vec()
        .unwrap();
    let projected = imported().with_projection(projection).unwrap();
    assert_eq!(projected.feature_dim(), 3);

    // Each row is the plain feature times the weight, plus the bias.
    let rows = features(&projected);
    for (row, feature) in rows.chunks(3).zip(plain.chunks(40)) {
        for (j, value) in row.iter().enumerate() {
            let expected: f32 = bias[j]
                + feature
                    .iter()
                    .enumerate()
                    .map(|(i, f)| f * weight[i * 3 + j])
                    .sum::<f32>();
            assert!(
                (value - expected).abs() < 1e-4,
                "{value} against {expected}"
            );
        }
    }

    let bytes = to_native_bytes(&projected, false).unwrap();
    let loaded: ImageEncoder<Flex> = load_native(&bytes, &device).unwrap();
    assert_eq!(loaded.config(), projected.config());
    assert_eq!(features(&loaded), rows);

    let (backbone, split) = loaded.split_projection();
    assert!(split.is_some());
    assert_eq!(backbone.feature_dim(), 40);
    assert_eq!(features(&backbone), plain);
    // A configuration written before projections existed reads as one without.
    let ImageEncoderConfig::EfficientNetLite(config) = backbone.config() else {
        panic!("not an EfficientNet-Lite");
    };
    let mut json = serde_json::to_value(&config).unwrap();
    assert!(json.get("projection").is_none());
    json.as_object_mut()
        .unwrap()
        .insert("projection".into(), serde_json::json!(0));
    let zero: s2v_models::EfficientNetLiteConfig = serde_json::from_value(json).unwrap();
    assert!(
        ImageEncoder::<Flex>::init(&ImageEncoderConfig::EfficientNetLite(zero), &device).is_err()
    );
}
