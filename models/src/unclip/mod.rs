//! Stable unCLIP 2.1, the paper's diffusion variant: the parts that turn a 1024-d embedding into a picture.
//! So far the schedulers that step its latents.

pub mod schedulers;
