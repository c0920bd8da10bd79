//! Sample-rate conversion with rubato's FFT resampler (band-limited, deterministic).

use rubato::{FftFixedIn, Resampler};

use super::AudioError;

const CHUNK: usize = 1024;

/// Sample rates of real recordings. Anything outside is a broken header, and would make the resampler's FFT
/// sizes (which follow the ratio of the rates) unbounded.
pub const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Resamples a mono waveform from `from_rate` to `to_rate`. Equal rates return the input unchanged, so 16 kHz
/// inputs reach the spectrogram bit for bit as the reference reads them.
pub fn resample(samples: &[f64], from_rate: u32, to_rate: u32) -> Result<Vec<f64>, AudioError> {
    for rate in [from_rate, to_rate] {
        if !SUPPORTED_RATES.contains(&rate) {
            return Err(AudioError::InvalidSampleRate(rate));
        }
    }
    if from_rate == to_rate {
        return Ok(samples.to_vec());
    }
    let mut resampler = FftFixedIn::<f64>::new(from_rate as usize, to_rate as usize, CHUNK, 2, 1)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    let expected = (samples.len() as u128 * to_rate as u128).div_ceil(from_rate as u128) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut position = 0;
    // Feed whole chunks, zero-padding past the end until the delayed tail has come out.
    while out.len() < expected + delay {
        let needed = resampler.input_frames_next();
        let mut chunk = vec![0.0; needed];
        if position < samples.len() {
            let take = needed.min(samples.len() - position);
            chunk[..take].copy_from_slice(&samples[position..position + take]);
        }
        position += needed;
        let produced = resampler
            .process(&[chunk], None)
            .map_err(|e| AudioError::Resample(e.to_string()))?;
        out.extend_from_slice(&produced[0]);
    }
    Ok(out[delay..delay + expected].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_rate_is_identity() {
        let x = vec![0.1, -0.2, 0.3];
        assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_length() {
        // 440 Hz at 44.1 kHz for 1 s becomes 16,000 samples of 440 Hz.
        let x: Vec<f64> = (0..44100)
            .map(|i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 44100.0).sin())
            .collect();
        let y = resample(&x, 44100, 16000).unwrap();
        assert_eq!(y.len(), 16000);
        let max_err = (2000..14000)
            .map(|i| (y[i] - (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16000.0).sin()).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 1e-3, "max error {max_err}");
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(resample(&[0.0], 0, 16000).is_err());
    }
}
