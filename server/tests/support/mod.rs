//! What the diffusion tests share: the tiny Stable unCLIP model, converted.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use s2v_models::checkpoint::save_native;
use s2v_models::unclip::convert::convert_unclip;
use s2v_models::{AudioEncoder, AudioEncoderConfig, NetworkModule};

/// The tiny model's embedding width.
pub const WIDTH: usize = 6;

/// The tiny networks converted as `s2v convert-unclip` does, with a 6-d audio encoder.
pub fn tiny_converted(root: &Path) -> PathBuf {
    let config = AudioEncoderConfig::narrow_sound2vision(WIDTH);
    let encoder = AudioEncoder::<Flex>::init(&config, &Default::default()).unwrap();
    let encoder_path = root.join("sound2vision.safetensors");
    save_native(&encoder, &encoder_path, false).unwrap();
    let out = root.join("tiny-unclip");
    let diffusers = s2v_tests::tiny_unclip_folder(root);
    convert_unclip::<Flex>(&diffusers, &encoder_path, &out, &Default::default()).unwrap();
    out
}
