//! The embedded default model: the three networks that `s2v train --preset default` made from Debian's
//! packages (docs/experiments.md), in the project's f16 safetensors format. The server, the page and `s2v` use it
//! when no other weights are given, so a fresh machine needs no downloads.

use burn::prelude::*;

use crate::checkpoint::{CheckpointError, load_native};
use crate::{NetworkKind, NetworkModule};

/// The model id that generations made with these weights record.
pub const MODEL_ID: &str = "s2v-default";

pub const IMAGE_ENCODER: &[u8] = include_bytes!("../default/image_encoder.safetensors");
pub const GENERATOR: &[u8] = include_bytes!("../default/generator.safetensors");
pub const AUDIO_ENCODER: &[u8] = include_bytes!("../default/audio_encoder.safetensors");
/// What these weights were trained on, package by package, with each licence and credit and the licence that
/// follows for the weights (Markdown, written by `s2v data notice` from the training data set).
pub const DATA_NOTICE: &str = include_str!("../default/NOTICE.md");

/// The embedded file of a network, by its kind.
pub fn bytes_for(kind: NetworkKind) -> &'static [u8] {
    match kind {
        NetworkKind::ImageEncoder => IMAGE_ENCODER,
        NetworkKind::Generator => GENERATOR,
        NetworkKind::AudioEncoder => AUDIO_ENCODER,
    }
}

/// Decodes the embedded weights of network `N`.
pub fn load<B: Backend, N: NetworkModule<B>>(device: &B::Device) -> Result<N, CheckpointError> {
    load_native(bytes_for(N::KIND), device)
}
