//! The audio front end of Sound2Scene: decode, downmix, resample to 16 kHz, fit to 10 s, clip, spectrogram.
//!
//! [`spectrogram_from_bytes`] is the whole pipeline; the stages are public so that the page and the trainer can
//! apply the paper's waveform controls (gain, mixing) between decoding and the spectrogram.

mod decode;
mod error;
mod resample;
mod spectrogram;
mod waveform;

pub use decode::{DecodedAudio, decode_audio};
pub use error::AudioError;
pub use resample::resample;
pub use spectrogram::{
    FREQ_BINS, HOP_LENGTH, SEGMENT_LENGTH, Spectrogram, TIME_FRAMES, log_spectrogram, tukey_window,
};
pub use waveform::{CLIP_SAMPLES, apply_gain, clip_unit, fit_to_length, mix};

/// The sample rate every network input is computed at.
pub const SAMPLE_RATE: u32 = 16_000;

/// Decodes an audio file and brings it to the network's input: mono, 16 kHz, exactly [`CLIP_SAMPLES`] samples
/// (shorter clips repeated cyclically, longer ones cut) and clipped to [-1, 1].
pub fn waveform_from_bytes(
    bytes: &[u8],
    extension_hint: Option<&str>,
) -> Result<Vec<f64>, AudioError> {
    let decoded = decode_audio(bytes, extension_hint)?;
    let mono16k = resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?;
    let mut fitted = fit_to_length(&mono16k, CLIP_SAMPLES)?;
    clip_unit(&mut fitted);
    Ok(fitted)
}

/// The whole front end: an audio file's bytes to the normalised 257 x 1004 log-spectrogram.
pub fn spectrogram_from_bytes(
    bytes: &[u8],
    extension_hint: Option<&str>,
) -> Result<Spectrogram, AudioError> {
    log_spectrogram(&waveform_from_bytes(bytes, extension_hint)?)
}
