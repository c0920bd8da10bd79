//! Long recordings (ambiences of birdsong, rivers) cut into clips of the length the audio encoder hears, so
//! that one two-minute file becomes several training sounds instead of one that the encoder hears a tenth of.

/// Sounds up to this long stay whole.
pub const LONGEST_WHOLE_SECONDS: f64 = 12.0;
/// The length of the clips longer sounds are cut into: the encoder's input (10 s at 16 kHz).
pub const CLIP_SECONDS: f64 = 10.0;
/// At most this many clips from one file, so that a long file does not outweigh its label's other sounds.
pub const MOST_CLIPS: usize = 6;
/// A clip whose RMS level is below this (about -54 dBFS) is silence.
const SILENCE_RMS: f64 = 2e-3;

/// The clips of `samples` at `sample_rate` worth training on: the sound whole when it is short, else up to
/// [`MOST_CLIPS`] consecutive clips of [`CLIP_SECONDS`] (a shorter tail is dropped); silent clips are left out.
pub fn clips(samples: &[f64], sample_rate: u32) -> Vec<&[f64]> {
    let rate = f64::from(sample_rate);
    let pieces: Vec<&[f64]> = if samples.len() as f64 <= LONGEST_WHOLE_SECONDS * rate {
        vec![samples]
    } else {
        samples
            .chunks_exact((CLIP_SECONDS * rate) as usize)
            .take(MOST_CLIPS)
            .collect()
    };
    pieces.into_iter().filter(|clip| !is_silent(clip)).collect()
}

fn is_silent(samples: &[f64]) -> bool {
    if samples.is_empty() {
        return true;
    }
    let mean_square = samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64;
    mean_square.sqrt() < SILENCE_RMS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(seconds: f64, rate: u32) -> Vec<f64> {
        (0..(seconds * f64::from(rate)) as usize)
            .map(|i| (i as f64 * 0.05).sin() * 0.5)
            .collect()
    }

    #[test]
    fn short_sounds_stay_whole() {
        let sound = tone(11.5, 100);
        let cut = clips(&sound, 100);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].len(), sound.len());
    }

    #[test]
    fn long_sounds_become_ten_second_clips_at_most_six() {
        assert_eq!(
            clips(&tone(25.0, 100), 100).len(),
            2,
            "the 5 s tail is dropped"
        );
        let long = tone(300.0, 100);
        let many = clips(&long, 100);
        assert_eq!(many.len(), MOST_CLIPS);
        assert!(many.iter().all(|clip| clip.len() == 1000));
    }

    #[test]
    fn silent_clips_are_left_out() {
        let mut sound = vec![0.0; 1000];
        sound.extend(tone(10.0, 100));
        sound.extend(vec![1e-4; 1000]);
        assert_eq!(clips(&sound, 100).len(), 1);
        assert!(clips(&[0.0; 10], 100).is_empty());
        assert!(clips(&[], 100).is_empty());
    }
}
