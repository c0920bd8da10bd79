//! The reference's log-spectrogram: `scipy.signal.spectrogram(x, 16000, nperseg=512, noverlap=353)` (periodic
//! Tukey(0.25) window, constant detrend per segment, one-sided PSD density), then `ln(S + 1e-7)` and one global
//! mean/std normalisation. Computed in f64 like numpy, returned as f32.

use realfft::RealFftPlanner;

use super::{AudioError, CLIP_SAMPLES, SAMPLE_RATE};

pub const SEGMENT_LENGTH: usize = 512;
pub const HOP_LENGTH: usize = 512 - 353;
pub const FREQ_BINS: usize = SEGMENT_LENGTH / 2 + 1;
pub const TIME_FRAMES: usize = (CLIP_SAMPLES - SEGMENT_LENGTH) / HOP_LENGTH + 1;
const TUKEY_ALPHA: f64 = 0.25;
const LOG_FLOOR: f64 = 1e-7;
const STD_FLOOR: f64 = 1e-9;

/// A normalised log-spectrogram, frequency-major: `data[f * TIME_FRAMES + t]`, shape `(257, 1004)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub data: Vec<f32>,
}

impl Spectrogram {
    pub const SHAPE: [usize; 2] = [FREQ_BINS, TIME_FRAMES];
}

/// scipy's `get_window(('tukey', alpha), n)`: the periodic window, i.e. the symmetric one of length n + 1
/// without its last sample.
pub fn tukey_window(n: usize, alpha: f64) -> Vec<f64> {
    let m = n + 1;
    let width = (alpha * (m - 1) as f64 / 2.0).floor() as usize;
    let denom = alpha * (m - 1) as f64;
    (0..n)
        .map(|i| {
            let x = i as f64;
            if i <= width {
                0.5 * (1.0 + (std::f64::consts::PI * (-1.0 + 2.0 * x / denom)).cos())
            } else if i < m - width - 1 {
                1.0
            } else {
                0.5 * (1.0 + (std::f64::consts::PI * (-2.0 / alpha + 1.0 + 2.0 * x / denom)).cos())
            }
        })
        .collect()
}

/// The normalised log-spectrogram of exactly [`CLIP_SAMPLES`] samples at 16 kHz.
pub fn log_spectrogram(samples: &[f64]) -> Result<Spectrogram, AudioError> {
    if samples.len() != CLIP_SAMPLES {
        return Err(AudioError::WrongLength {
            expected: CLIP_SAMPLES,
            actual: samples.len(),
        });
    }
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(AudioError::NonFinite);
    }
    let window = tukey_window(SEGMENT_LENGTH, TUKEY_ALPHA);
    // PSD density scaling; the one-sided spectrum doubles every bin but DC and Nyquist.
    let scale = 1.0 / (f64::from(SAMPLE_RATE) * window.iter().map(|w| w * w).sum::<f64>());
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(SEGMENT_LENGTH);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut log_power = vec![0.0f64; FREQ_BINS * TIME_FRAMES];
    for t in 0..TIME_FRAMES {
        let segment = &samples[t * HOP_LENGTH..t * HOP_LENGTH + SEGMENT_LENGTH];
        let mean = segment.iter().sum::<f64>() / SEGMENT_LENGTH as f64;
        for ((slot, s), w) in input.iter_mut().zip(segment).zip(&window) {
            *slot = (s - mean) * w;
        }
        fft.process(&mut input, &mut spectrum)
            .expect("buffers come from the same plan");
        for (f, bin) in spectrum.iter().enumerate() {
            let one_sided = if f == 0 || f == FREQ_BINS - 1 {
                1.0
            } else {
                2.0
            };
            log_power[f * TIME_FRAMES + t] = (bin.norm_sqr() * scale * one_sided + LOG_FLOOR).ln();
        }
    }
    let n = log_power.len() as f64;
    let mean = log_power.iter().sum::<f64>() / n;
    let std = (log_power.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let data = log_power
        .iter()
        .map(|v| ((v - mean) / (std + STD_FLOOR)) as f32)
        .collect();
    Ok(Spectrogram { data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_constants_match_the_reference() {
        assert_eq!((FREQ_BINS, TIME_FRAMES, HOP_LENGTH), (257, 1004, 159));
    }

    #[test]
    fn tukey_window_is_periodic_and_flat_in_the_middle() {
        let w = tukey_window(512, 0.25);
        assert_eq!(w.len(), 512);
        assert_eq!(w[0], 0.0);
        assert_eq!(w[256], 1.0);
        // Periodic: symmetric about n/2, so w[1] == w[511].
        assert!((w[1] - w[511]).abs() < 1e-12);
    }

    #[test]
    fn output_is_normalised() {
        let x: Vec<f64> = (0..CLIP_SAMPLES)
            .map(|i| (i as f64 * 0.05).sin() * 0.3)
            .collect();
        let s = log_spectrogram(&x).unwrap();
        assert_eq!(s.data.len(), FREQ_BINS * TIME_FRAMES);
        let mean = s.data.iter().map(|&v| v as f64).sum::<f64>() / s.data.len() as f64;
        assert!(mean.abs() < 1e-5);
    }

    #[test]
    fn wrong_length_and_nan_are_errors() {
        assert!(matches!(
            log_spectrogram(&[0.0; 10]),
            Err(AudioError::WrongLength { .. })
        ));
        let mut x = vec![0.0; CLIP_SAMPLES];
        x[5] = f64::NAN;
        assert!(matches!(log_spectrogram(&x), Err(AudioError::NonFinite)));
    }
}
