//! Waveform operations: fitting to the clip length, clipping, and the paper's volume and mixing controls.

use super::AudioError;

/// Samples in the 10 s clip that the spectrogram is computed over (16 kHz).
pub const CLIP_SAMPLES: usize = 160_000;

/// Repeats `samples` cyclically until `length` samples are filled, or cuts it to `length`.
///
/// The reference computes `np.tile(x, 10)[:160000]`, which leaves a clip under one second shorter than 10 s
/// (and its spectrogram narrower than the network's input). Filling cyclically gives the same samples wherever
/// the reference's output is long enough, and a full-length clip otherwise.
pub fn fit_to_length(samples: &[f64], length: usize) -> Result<Vec<f64>, AudioError> {
    if samples.is_empty() {
        return Err(AudioError::NoSamples);
    }
    Ok(samples.iter().copied().cycle().take(length).collect())
}

/// Clips to [-1, 1] in place, as the reference does before its spectrogram.
pub fn clip_unit(samples: &mut [f64]) {
    for s in samples {
        *s = s.clamp(-1.0, 1.0);
    }
}

/// Scales a waveform by a gain (the paper's volume control, Fig. 8). Clipping is left to the front end.
pub fn apply_gain(samples: &mut [f64], gain: f64) {
    for s in samples {
        *s *= gain;
    }
}

/// Mixes waveforms of equal length with the given weights (the paper's sound mixing, Fig. 9).
pub fn mix(waveforms: &[(&[f64], f64)]) -> Result<Vec<f64>, AudioError> {
    let Some(((first, _), rest)) = waveforms.split_first() else {
        return Err(AudioError::NoSamples);
    };
    if let Some((other, _)) = rest.iter().find(|(w, _)| w.len() != first.len()) {
        return Err(AudioError::LengthMismatch(first.len(), other.len()));
    }
    let mut out = vec![0.0; first.len()];
    for (wave, weight) in waveforms {
        for (o, s) in out.iter_mut().zip(wave.iter()) {
            *o += weight * s;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clips_repeat_cyclically_and_long_ones_are_cut() {
        assert_eq!(
            fit_to_length(&[1.0, 2.0, 3.0], 7).unwrap(),
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
        );
        assert_eq!(fit_to_length(&[1.0, 2.0, 3.0], 2).unwrap(), vec![1.0, 2.0]);
        assert!(fit_to_length(&[], 2).is_err());
    }

    #[test]
    fn clip_gain_and_mix() {
        let mut w = vec![0.5, -2.0, 3.0];
        clip_unit(&mut w);
        assert_eq!(w, vec![0.5, -1.0, 1.0]);
        apply_gain(&mut w, 0.5);
        assert_eq!(w, vec![0.25, -0.5, 0.5]);
        let mixed = mix(&[(&[1.0, 2.0], 0.5), (&[3.0, 4.0], 0.25)]).unwrap();
        assert_eq!(mixed, vec![1.25, 2.0]);
        assert!(matches!(
            mix(&[(&[1.0], 1.0), (&[1.0, 2.0], 1.0)]),
            Err(AudioError::LengthMismatch(1, 2))
        ));
        assert!(mix(&[]).is_err());
    }
}
