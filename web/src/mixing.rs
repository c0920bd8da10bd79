//! The paper's controls as arithmetic: the sounds mixed into the 10 s the network hears, and a picture's
//! feature mixed into the sound's latent.

use s2v_shared::audio::{AudioError, clip_at, clip_unit, mix};

/// One sound as the mixer takes it: 16 kHz samples, where its 10 s start, and its volume.
pub struct Part<'a> {
    pub samples: &'a [f32],
    pub start: usize,
    pub volume: f64,
}

/// The clip the encoder reads: each sound's 10 s from its start (repeated where shorter), weighted by its
/// volume, summed and clipped to [-1, 1], as the paper's volume and mixing controls (Figs. 8 and 9). One
/// sound at volume 1 gives exactly what `s2v encode-audio` reads from the same file.
pub fn clip(parts: &[Part]) -> Result<Vec<f32>, AudioError> {
    let windows = parts
        .iter()
        .map(|part| {
            let samples: Vec<f64> = part.samples.iter().map(|&s| f64::from(s)).collect();
            clip_at(&samples, part.start)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weighted: Vec<(&[f64], f64)> = windows
        .iter()
        .zip(parts)
        .map(|(window, part)| (window.as_slice(), part.volume))
        .collect();
    let mut mixed = mix(&weighted)?;
    clip_unit(&mut mixed);
    Ok(mixed.iter().map(|&s| s as f32).collect())
}

/// The latent sent to the generator: the sound's, or, with a picture, `(1 - lambda) a + lambda v` of the two
/// unit-length features (the generator normalises whatever it gets, so only their directions matter).
pub fn latent(sound: &[f32], picture: Option<(&[f32], f64)>) -> Vec<f32> {
    match picture {
        Some((feature, lambda)) if feature.len() == sound.len() => {
            let (a, v) = (unit(sound), unit(feature));
            let lambda = lambda.clamp(0.0, 1.0) as f32;
            a.iter()
                .zip(&v)
                .map(|(a, v)| (1.0 - lambda) * a + lambda * v)
                .collect()
        }
        _ => sound.to_vec(),
    }
}

fn unit(values: &[f32]) -> Vec<f32> {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    values.iter().map(|v| v / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sound_at_its_own_volume_is_the_files_clip() {
        let samples: Vec<f32> = (0..40_000)
            .map(|i| ((i % 97) as f32 - 48.0) / 60.0)
            .collect();
        let clip = clip(&[Part {
            samples: &samples,
            start: 0,
            volume: 1.0,
        }])
        .unwrap();
        let samples64: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
        let expected: Vec<f32> = clip_at(&samples64, 0)
            .unwrap()
            .iter()
            .map(|&s| s as f32)
            .collect();
        assert_eq!(clip, expected);
    }

    #[test]
    fn volumes_weight_the_sounds_and_the_sum_is_clipped() {
        let a = vec![0.5f32; 16_000];
        let b = vec![-0.25f32; 16_000];
        let mixed = clip(&[
            Part {
                samples: &a,
                start: 0,
                volume: 2.0,
            },
            Part {
                samples: &b,
                start: 0,
                volume: 0.5,
            },
        ])
        .unwrap();
        // 2 x 0.5 - 0.5 x 0.25 = 0.875; at volume 3 alone, 1.5 is clipped to 1.
        assert!((mixed[100] - 0.875).abs() < 1e-6);
        let loud = clip(&[Part {
            samples: &a,
            start: 0,
            volume: 3.0,
        }])
        .unwrap();
        assert_eq!(loud[5], 1.0);
    }

    #[test]
    fn a_picture_turns_the_latent_towards_its_feature() {
        let sound = [3.0, 0.0];
        let picture = [0.0, 5.0];
        assert_eq!(latent(&sound, None), vec![3.0, 0.0]);
        assert_eq!(latent(&sound, Some((&picture, 0.0))), vec![1.0, 0.0]);
        assert_eq!(latent(&sound, Some((&picture, 1.0))), vec![0.0, 1.0]);
        assert_eq!(latent(&sound, Some((&picture, 0.5))), vec![0.5, 0.5]);
        // A feature of another length (another model) is ignored rather than mixed.
        assert_eq!(latent(&sound, Some((&[1.0], 0.5))), vec![3.0, 0.0]);
    }
}
