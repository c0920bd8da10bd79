//! The Sound2Vision networks in burn: the audio encoder `f_A`, the image encoder `f_V` and IC-GAN's generator
//! `G`, the project's own checkpoint format, PyTorch import (feature `torch`), image preprocessing (feature
//! `image`) and what training needs (feature `train`).
//!
//! Every network reads its configuration off a checkpoint's tensor shapes, so the narrow reference models of
//! the tests and the full published ones load through the same code. Without default features the crate
//! builds for `wasm32-unknown-unknown`, where the page loads the audio encoder from bytes
//! ([`checkpoint::load_native`]).

pub mod audio_encoder;
pub mod checkpoint;
pub mod default_model;
pub mod fused;
pub mod generator;
pub mod image_encoder;
pub mod layers;
pub mod network;
pub mod norm;
mod resnet;
pub mod unclip;

#[cfg(feature = "image")]
pub mod preprocess;

#[cfg(feature = "train")]
pub mod discriminator;
#[cfg(feature = "train")]
pub mod loss;
#[cfg(feature = "train")]
pub mod projection;
#[cfg(feature = "train")]
pub mod spectral_norm;
#[cfg(feature = "train")]
pub mod trainable_generator;

pub use audio_encoder::{AudioEncoder, AudioEncoderConfig};
pub use checkpoint::CheckpointError;
#[cfg(feature = "torch")]
pub use checkpoint::{FromTorch, load_checkpoint};
pub use generator::{Generator, GeneratorConfig};
pub use image_encoder::{
    EfficientNetLite, EfficientNetLiteConfig, ImageEncoder, ImageEncoderConfig, ResNetImageEncoder,
    ResNetImageEncoderConfig,
};
pub use network::{NetworkKind, NetworkModule};

use burn::prelude::*;

/// Parameters as PyTorch counts them: batch-norm statistics are buffers there, not parameters.
pub fn parameter_count<B: Backend, M: burn_store::ModuleSnapshot<B>>(module: &M) -> usize {
    const BUFFERS: [&str; 4] = ["running_mean", "running_var", "stored_mean", "stored_var"];
    module
        .collect(None, None, false)
        .iter()
        .filter(|t| !BUFFERS.iter().any(|b| t.full_path().ends_with(b)))
        .map(|t| t.shape.num_elements())
        .sum()
}
