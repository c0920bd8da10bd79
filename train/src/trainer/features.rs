//! The frozen image encoder's features of the training pictures, which the generator is conditioned on and
//! the audio encoder is trained towards. Computed once per stage, from the picture files at the encoder's own
//! input size: a pretrained encoder reads larger pictures than the generator makes (EfficientNet-Lite2 260 px,
//! the generator 64 px), and holding every picture at that size would take gigabytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use s2v_models::ImageEncoder;
use s2v_models::preprocess::{normalise_unit_pixels, unit_pixels};
use s2v_serving::networks::encode_rows;

use super::data::mirror;

/// Pictures per forward pass: bounded memory at any input size.
const BATCH: usize = 16;

/// A picture file as the encoder reads it: at `size`, ImageNet-normalised, mirrored or not.
fn encoder_input(path: &Path, size: usize, mirrored: bool) -> Result<Vec<f32>> {
    let picture = image::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut chw = unit_pixels(&picture, size).with_context(|| format!("{}", path.display()))?;
    if mirrored {
        chw = mirror(&chw, size);
    }
    normalise_unit_pixels(&mut chw);
    Ok(chw)
}

/// One feature row per picture file (of its mirror image where `mirrored`), as the encoder gives them.
pub fn frozen_features<B: Backend>(
    encoder: &ImageEncoder<B>,
    pictures: &[PathBuf],
    mirrored: bool,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>> {
    let size = encoder.input_size();
    encode_rows::<B>(
        pictures.len(),
        [3, size, size],
        BATCH,
        device,
        |i| encoder_input(&pictures[i], size, mirrored),
        |x| encoder.forward(x),
    )
}
