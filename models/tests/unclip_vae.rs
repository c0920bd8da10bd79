//! Parity of the VAE decoder with diffusers' `AutoencoderKL.decode` on a tiny random model
//! (`tests/data/unclip/vae`, written by `make_vae_fixture.py` there), from its fp32 and fp16 weight files,
//! and the named errors of a folder that is not one.

use burn::backend::Flex;
use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use s2v_models::CheckpointError;
use s2v_models::unclip::vae_decoder::{VaeConfig, VaeDecoder};
use s2v_tests::{checkout, max_relative_error, read_values};

const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixture() -> std::path::PathBuf {
    checkout().join("tests/data/unclip/vae")
}

fn decode(fp16: bool) -> Vec<f32> {
    let (decoder, config) =
        VaeDecoder::<Flex>::from_diffusers_dir(&fixture(), fp16, &Default::default()).unwrap();
    assert_eq!(config.block_out_channels, [8, 16]);
    let latents = Tensor::<Flex, 4>::from_data(
        TensorData::new(read_values(&fixture().join("latents.npy")), [2, 4, 6, 6]),
        &Default::default(),
    );
    let pixels = decoder.forward(latents);
    assert_eq!(pixels.dims(), [2, 3, 12, 12]);
    pixels.into_data().to_vec().unwrap()
}

#[test]
fn the_decoder_matches_diffusers() {
    let expected = read_values(&fixture().join("decoded.npy"));
    let error = max_relative_error(&decode(false), &expected);
    assert!(error < RELATIVE_TOLERANCE, "relative error {error}");
}

#[test]
fn the_fp16_weights_decode_as_diffusers_decodes_with_them() {
    let expected = read_values(&fixture().join("decoded_fp16_weights.npy"));
    let error = max_relative_error(&decode(true), &expected);
    assert!(error < RELATIVE_TOLERANCE, "relative error {error}");
}

/// Every float parameter cast to the given precision, as a backend that holds its weights in it has them.
struct Cast(DType);

impl<B: Backend> ModuleMapper<B> for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|tensor| tensor.cast(self.0))
    }
}

/// The precisions of a module's float parameters.
#[derive(Default)]
struct Precisions(Vec<DType>);

impl<B: Backend> ModuleVisitor<B> for Precisions {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dtype());
    }
}

fn precisions(decoder: &VaeDecoder<Flex>) -> Vec<DType> {
    let mut visitor = Precisions::default();
    decoder.visit(&mut visitor);
    visitor.0
}

#[test]
fn a_decoder_held_in_f16_decodes_in_f32_once_brought_to_single_precision() {
    let device = Default::default();
    let (decoder, config) =
        VaeDecoder::<Flex>::from_diffusers_dir(&fixture(), true, &device).unwrap();
    assert!(
        config.force_upcast,
        "diffusers' default, which the fixture keeps"
    );
    let half = decoder.map(&mut Cast(DType::F16));
    let weights = precisions(&half);
    assert!(weights.len() > 10 && weights.iter().all(|d| *d == DType::F16));

    let single = half.in_single_precision();
    assert!(precisions(&single).iter().all(|d| *d == DType::F32));
    let latents = Tensor::<Flex, 4>::from_data(
        TensorData::new(read_values(&fixture().join("latents.npy")), [2, 4, 6, 6]),
        &device,
    );
    let pixels = single.forward(latents);
    assert_eq!(pixels.dtype(), DType::F32);
    // The fp16 weights, widened without loss, in f32 arithmetic: what diffusers decodes with them.
    let expected = read_values(&fixture().join("decoded_fp16_weights.npy"));
    let error = max_relative_error(&pixels.into_data().to_vec().unwrap(), &expected);
    assert!(error < RELATIVE_TOLERANCE, "relative error {error}");
}

#[test]
fn a_folder_that_is_not_a_vae_gives_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| std::fs::copy(fixture().join(name), dir.path().join(name)).unwrap();
    let load = || VaeDecoder::<Flex>::from_diffusers_dir(dir.path(), false, &Default::default());
    // No config.
    assert!(matches!(load(), Err(CheckpointError::Io { .. })));
    copy("config.json");
    // No weights.
    assert!(matches!(load(), Err(CheckpointError::Io { .. })));
    std::fs::write(
        dir.path().join("diffusion_pytorch_model.safetensors"),
        b"not safetensors",
    )
    .unwrap();
    assert!(matches!(load(), Err(CheckpointError::Safetensors { .. })));
    copy("diffusion_pytorch_model.safetensors");
    // A config that does not fit the weights names the tensor.
    let config = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("16\n", "24\n"),
    )
    .unwrap();
    let error = load().unwrap_err().to_string();
    assert!(error.contains("decoder.conv_in.weight"), "{error}");
    // A block type this port lacks is refused by name.
    let other = config.replace("\"UpDecoderBlock2D\",", "\"AttnUpDecoderBlock2D\",");
    let error = VaeConfig::from_json(&other).unwrap_err().to_string();
    assert!(error.contains("AttnUpDecoderBlock2D"), "{error}");
}
