//! The Sound2Vision networks in burn: the audio encoder `f_A`, the image encoder `f_V` and IC-GAN's generator
//! `G`, with PyTorch checkpoint import, the project's own checkpoint format and the training loss.
//!
//! Every network reads its configuration off a checkpoint's tensor shapes, so the narrow reference models of
//! the tests and the full published ones load through the same code.

pub mod audio_encoder;
pub mod checkpoint;
pub mod default_model;
pub mod discriminator;
pub mod generator;
pub mod image_encoder;
pub mod layers;
pub mod loss;
pub mod norm;
pub mod preprocess;
pub mod projection;
mod resnet;
pub mod spectral_norm;
pub mod trainable_generator;

pub use audio_encoder::{AudioEncoder, AudioEncoderConfig};
pub use checkpoint::{CheckpointError, load_checkpoint};
pub use generator::{Generator, GeneratorConfig};
pub use image_encoder::{ImageEncoder, ImageEncoderConfig};

use burn::prelude::*;

/// What every network offers the checkpoint code: its configuration, random initialisation from one, and
/// import from a PyTorch state dict.
pub trait NetworkModule<B: Backend>: Module<B> + Sized {
    type Config: serde::Serialize + serde::de::DeserializeOwned;
    /// Human-readable name, also stored in native checkpoints to refuse loading one network as another.
    const KIND: &'static str;

    fn config(&self) -> Self::Config;
    fn init(config: &Self::Config, device: &B::Device) -> Result<Self, CheckpointError>;
    fn from_torch(
        state_dict: checkpoint::TorchStateDict,
        device: &B::Device,
    ) -> Result<Self, CheckpointError>;
}

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
