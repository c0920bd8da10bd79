//! What the `s2v` tests of the diffusion variant share.

use std::path::Path;

use burn::backend::Flex;
use s2v_models::checkpoint::save_native;
use s2v_models::{AudioEncoder, AudioEncoderConfig, NetworkModule};

/// The embedding width of the tiny Stable unCLIP fixtures (`tests/data/unclip`).
pub const TINY_WIDTH: usize = 6;

/// Writes to `path` a Sound2Vision-shaped audio encoder (with `fc2`) of the tiny model's embedding width.
pub fn save_tiny_sound2vision_encoder(path: &Path) {
    let config = AudioEncoderConfig::narrow_sound2vision(TINY_WIDTH);
    let encoder = AudioEncoder::<Flex>::init(&config, &Default::default()).unwrap();
    save_native(&encoder, path, false).unwrap();
}
