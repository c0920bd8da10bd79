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
    // Only the first 10 s reach the network: resample those (and a little more for the filter's edge).
    let needed = (CLIP_SAMPLES as u64 * u64::from(decoded.sample_rate))
        .div_ceil(u64::from(SAMPLE_RATE)) as usize
        + 1024;
    let head = &decoded.samples[..decoded.samples.len().min(needed)];
    let mono16k = resample(head, decoded.sample_rate, SAMPLE_RATE)?;
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

#[cfg(test)]
pub(crate) mod test_support {
    /// A minimal PCM16 mono WAV file.
    pub fn wav_bytes(samples: &[i16], sample_rate: u32) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&sample_rate.to_le_bytes());
        out.extend_from_slice(&sample_rate.wrapping_mul(2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::wav_bytes;
    use super::*;

    #[test]
    fn extreme_sample_rates_give_a_result_or_an_error() {
        let samples: Vec<i16> = (0..4000).map(|i: i16| i.wrapping_mul(97)).collect();
        for rate in [
            1,
            7,
            1000,
            8000,
            16000,
            44_100,
            44_101,
            192_000,
            768_000,
            1_000_000,
            u32::MAX,
        ] {
            let started = std::time::Instant::now();
            match spectrogram_from_bytes(&wav_bytes(&samples, rate), Some("wav")) {
                Ok(s) => assert_eq!(s.data.len(), FREQ_BINS * TIME_FRAMES),
                Err(e) => assert!(
                    matches!(e, AudioError::InvalidSampleRate(r) if r == rate),
                    "{rate}: {e}"
                ),
            }
            assert!(
                started.elapsed().as_secs() < 20,
                "rate {rate} took {:?}",
                started.elapsed()
            );
        }
    }
}
