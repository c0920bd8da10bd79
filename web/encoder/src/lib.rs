//! The page's audio encoder, run in a Web Worker so that the page never freezes: the audio front end of
//! `s2v-shared` (decoding, resampling, the log-spectrogram) and the audio encoder of `s2v-models`, on burn's
//! wgpu backend where the browser offers a WebGPU adapter and on its CPU backend otherwise.
//!
//! The worker answers [`EncoderCommand`]s with [`EncoderEvent`]s (`s2v_shared::encoder_protocol`). The page
//! holds the sounds; the worker holds only the loaded network.
//!
//! [`EncoderCommand`]: s2v_shared::encoder_protocol::EncoderCommand
//! [`EncoderEvent`]: s2v_shared::encoder_protocol::EncoderEvent

pub mod model;
mod weights;
mod worker;

pub use worker::run;
