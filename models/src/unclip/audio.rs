//! The diffusion variant's audio encoder: Sound2Vision's `fc2` encoder, mapping a sound into Stable unCLIP's
//! 1024-d CLIP image-embedding space.

use std::path::Path;

use burn::prelude::*;

use crate::checkpoint::{CheckpointError, load_checkpoint};
use crate::{AudioEncoder, NetworkModule};

const NETWORK: &str = "Sound2Vision audio encoder";

/// Loads Sound2Vision's audio encoder (`sound2vision_env.pth`, or a converted file). The authors' release
/// loads this checkpoint non-strictly, so a Sound2Scene encoder (without `fc2`) would run there with `fc2`
/// left at random values; here it is refused.
pub fn load_sound2vision_encoder<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<AudioEncoder<B>, CheckpointError> {
    let encoder: AudioEncoder<B> = load_checkpoint(path, device)?;
    if encoder.config().fc2 {
        Ok(encoder)
    } else {
        Err(CheckpointError::MissingTensor {
            network: NETWORK,
            tensor: "audnet.fc2.weight".into(),
        })
    }
}
