//! Stable unCLIP 2.1, the paper's diffusion variant: the parts that turn a 1024-d embedding into a picture
//! (the audio encoder with `fc2`, the UNet, the schedulers, the VAE decoder, the text encoder that conversion
//! runs once), the pipeline that drives them, and the conversion of a diffusers folder into what serving needs.

#[cfg(feature = "torch")]
pub mod audio;
#[cfg(feature = "torch")]
mod blocks;
#[cfg(feature = "torch")]
pub mod convert;
#[cfg(feature = "torch")]
pub mod pipeline;
pub mod schedulers;
#[cfg(feature = "torch")]
pub mod text_encoder;
#[cfg(feature = "torch")]
mod transformer;
#[cfg(feature = "torch")]
pub mod unet;
#[cfg(feature = "torch")]
pub mod vae_decoder;
#[cfg(feature = "torch")]
pub mod weights;
