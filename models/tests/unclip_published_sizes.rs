//! Stable unCLIP 2.1's UNet and VAE decoder at their published sizes (`tests/data/unclip/published`, the
//! configurations and parameter counts diffusers gives them), built with zero weights: the layouts read the
//! published configurations, take exactly diffusers' parameter counts, and shape their outputs right.

use burn::backend::Flex;
use burn::prelude::*;
use s2v_models::checkpoint::{SyntheticFill, TorchStateDict};
use s2v_models::parameter_count;
use s2v_models::unclip::unet::{Unet, UnetConfig};
use s2v_models::unclip::vae_decoder::{VaeConfig, VaeDecoder};
use s2v_tests::checkout;

fn published(name: &str) -> String {
    std::fs::read_to_string(checkout().join("tests/data/unclip/published").join(name)).unwrap()
}

fn count(name: &str) -> usize {
    let counts: serde_json::Value =
        serde_json::from_str(&published("parameter_counts.json")).unwrap();
    counts[name].as_u64().unwrap() as usize
}

#[test]
fn the_published_vae_decoder_has_diffusers_parameter_count_and_upsamples_eightfold() {
    let config = VaeConfig::from_json(&published("vae_config.json")).unwrap();
    assert_eq!(
        format!("{config:?}"),
        format!("{:?}", VaeConfig::stable_diffusion())
    );
    let weights = TorchStateDict::synthetic("VAE decoder", SyntheticFill::Zeros);
    let decoder = VaeDecoder::<Flex>::read(weights, &config, &Default::default()).unwrap();
    assert_eq!(parameter_count(&decoder), count("vae_decoder"));
    assert_eq!(count("vae_decoder"), 49_490_199);
    let pixels = decoder.forward(Tensor::zeros([1, 4, 4, 4], &Default::default()));
    assert_eq!(pixels.dims(), [1, 3, 32, 32]);
}

#[test]
fn the_published_unet_has_diffusers_parameter_count() {
    let config = UnetConfig::from_json(&published("unet_config.json")).unwrap();
    assert_eq!(
        format!("{config:?}"),
        format!("{:?}", UnetConfig::stable_unclip_2_1())
    );
    let weights = TorchStateDict::synthetic("UNet", SyntheticFill::Zeros);
    let unet = Unet::<Flex>::read(weights, &config, &Default::default()).unwrap();
    // 865.9 M as Stable Diffusion 2.1's UNet, and 4.3 M for unCLIP's projection class embedding.
    assert_eq!(parameter_count(&unet), count("unet"));
    assert_eq!(count("unet"), 870_173_124);
}
