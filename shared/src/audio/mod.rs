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
    let seconds = CLIP_SAMPLES as f64 / f64::from(SAMPLE_RATE);
    clip_at(&mono_16k_from_bytes(bytes, extension_hint, seconds)?, 0)
}

/// Decodes an audio file to mono 16 kHz: the first `max_seconds` of it, where the page lets a person choose
/// which 10 s the network hears.
pub fn mono_16k_from_bytes(
    bytes: &[u8],
    extension_hint: Option<&str>,
    max_seconds: f64,
) -> Result<Vec<f64>, AudioError> {
    let decoded = decode_audio(bytes, extension_hint)?;
    to_mono_16k(&decoded.samples, decoded.sample_rate, max_seconds)
}

/// Mono samples at any rate to 16 kHz: the first `max_seconds`, and a little more for the filter's edge, so that
/// the samples kept are the same as from the whole sound.
pub fn to_mono_16k(
    samples: &[f64],
    sample_rate: u32,
    max_seconds: f64,
) -> Result<Vec<f64>, AudioError> {
    // The float-to-integer cast saturates, so an unlimited length keeps every sample.
    let needed =
        ((max_seconds.max(0.0) * f64::from(sample_rate)).ceil() as usize).saturating_add(1024);
    resample(
        &samples[..samples.len().min(needed)],
        sample_rate,
        SAMPLE_RATE,
    )
}

/// The 10 s the network hears from a 16 kHz sound, starting `start` samples in: repeated cyclically where the
/// sound is shorter, cut where it is longer, clipped to [-1, 1].
pub fn clip_at(mono_16k: &[f64], start: usize) -> Result<Vec<f64>, AudioError> {
    let start = start.min(mono_16k.len().saturating_sub(1));
    let mut clip = fit_to_length(&mono_16k[start..], CLIP_SAMPLES)?;
    clip_unit(&mut clip);
    Ok(clip)
}

/// A sound shorter than this says too little to picture (half a second).
pub const MIN_SAMPLES: usize = SAMPLE_RATE as usize / 2;
/// A sound whose loudest sample is below this (about -50 dBFS) is taken for silence.
pub const SILENCE_PEAK: f64 = 0.003;

/// Whether a 16 kHz sound is long and loud enough to encode: a recording of nothing, or a click, would give a
/// picture of nothing in particular, so the page says so instead.
pub fn check_audible(mono_16k: &[f64]) -> Result<(), AudioError> {
    if mono_16k.len() < MIN_SAMPLES {
        return Err(AudioError::TooShort {
            seconds: mono_16k.len() as f64 / f64::from(SAMPLE_RATE),
        });
    }
    let peak = mono_16k.iter().fold(0.0f64, |peak, s| peak.max(s.abs()));
    if peak < SILENCE_PEAK {
        return Err(AudioError::Silent);
    }
    Ok(())
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

    #[test]
    fn a_window_of_a_long_sound_starts_where_asked_and_the_first_is_the_files_clip() {
        // 25 s at 8 kHz: a ramp, so every sample says where it came from.
        let samples: Vec<i16> = (0..200_000).map(|i| (i % 30_000) as i16).collect();
        let wav = wav_bytes(&samples, 8000);
        let whole = mono_16k_from_bytes(&wav, Some("wav"), 600.0).unwrap();
        assert!((whole.len() as f64 / 16_000.0 - 25.0).abs() < 0.01);
        assert_eq!(
            clip_at(&whole, 0).unwrap(),
            waveform_from_bytes(&wav, Some("wav")).unwrap()
        );
        let later = clip_at(&whole, 5 * 16_000).unwrap();
        assert_eq!(later.len(), CLIP_SAMPLES);
        assert_eq!(later[..1000], whole[80_000..81_000]);
        // A start past the end keeps the last sample and repeats it.
        assert_eq!(clip_at(&whole, usize::MAX).unwrap().len(), CLIP_SAMPLES);
    }

    #[test]
    fn silence_and_clicks_are_not_audible_and_a_tone_is() {
        let tone: Vec<f64> = (0..16_000)
            .map(|i| (f64::from(i) * 0.1).sin() * 0.2)
            .collect();
        assert!(check_audible(&tone).is_ok());
        assert!(matches!(
            check_audible(&vec![0.001; 16_000]),
            Err(AudioError::Silent)
        ));
        assert!(matches!(
            check_audible(&tone[..4000]),
            Err(AudioError::TooShort { seconds }) if (seconds - 0.25).abs() < 1e-9
        ));
    }
}
