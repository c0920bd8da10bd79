//! Parity of the UNet with diffusers' `UNet2DConditionModel` on a tiny random model laid out as diffusers'
//! Stable unCLIP tests lay it out (`tests/data/unclip/unet`, written by `make_unet_fixture.py` there), and the
//! refusal of layouts this port does not implement.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::unclip::unet::{Unet, UnetConfig};
use s2v_tests::{checkout, read_values};

const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixture() -> std::path::PathBuf {
    checkout().join("tests/data/unclip/unet")
}

fn input<const D: usize>(name: &str, shape: [usize; D]) -> Tensor<Flex, D> {
    let values = read_values(&fixture().join(format!("{name}.npy")));
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

#[test]
fn the_unet_matches_diffusers() {
    let (unet, config) =
        Unet::<Flex>::from_diffusers_dir(&fixture(), false, &Default::default()).unwrap();
    assert_eq!(config.block_out_channels, [8, 16]);
    let timesteps = read_values(&fixture().join("timesteps.npy"));
    let output = unet.forward(
        input("latents", [2, 4, 8, 8]),
        &timesteps,
        input("text_states", [2, 5, 6]),
        Some(input("class_labels", [2, 12])),
    );
    assert_eq!(output.dims(), [2, 4, 8, 8]);
    let actual: Vec<f32> = output.into_data().to_vec().unwrap();
    let expected = read_values(&fixture().join("output.npy"));
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = actual
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    assert!(
        diff / scale < RELATIVE_TOLERANCE,
        "relative error {}",
        diff / scale
    );
}

#[test]
fn layouts_this_port_lacks_are_refused_by_name() {
    let json = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    for (from, to, named) in [
        ("\"DownBlock2D\"", "\"AttnDownBlock2D\"", "AttnDownBlock2D"),
        (
            "\"class_embed_type\": \"projection\"",
            "\"class_embed_type\": \"timestep\"",
            "timestep",
        ),
        (
            "\"addition_embed_type\": null",
            "\"addition_embed_type\": \"text_time\"",
            "addition_embed_type",
        ),
        (
            "\"transformer_layers_per_block\": 1",
            "\"transformer_layers_per_block\": 2",
            "transformer_layers_per_block",
        ),
    ] {
        assert!(json.contains(from), "{from}");
        let error = UnetConfig::from_json(&json.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(error.contains(named), "{error}");
    }
}
