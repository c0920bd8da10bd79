//! Training inputs held in memory, and their augmentations: SimCLR's views of pictures, and the waveform
//! augmentations of the audio stage (gain, mixing, time shift, noise).

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use s2v_models::preprocess::{normalize_unit_pixels, unit_pixels};
use s2v_shared::audio::{
    CLIP_SAMPLES, Spectrogram, clip_unit, fit_to_length, log_spectrogram, waveform_from_bytes,
};

/// One sample per index, built on all cores. Each sample gets its own random source, seeded from `rng` in
/// order, so a batch is the same whatever the number of threads.
pub fn par_samples<T: Send>(
    indices: &[usize],
    rng: &mut StdRng,
    make: impl Fn(usize, &mut StdRng) -> T + Sync,
) -> Vec<T> {
    use rand::SeedableRng;
    use rayon::prelude::*;
    let seeds: Vec<u64> = indices.iter().map(|_| rng.random()).collect();
    indices
        .par_iter()
        .zip(seeds)
        .map(|(&index, seed)| make(index, &mut StdRng::seed_from_u64(seed)))
        .collect()
}

/// Square RGB pictures at one resolution, channel-major, values in [0, 1].
pub struct PictureBank {
    pub size: usize,
    pub pixels: Vec<Vec<f32>>,
}

impl PictureBank {
    pub fn load<'a>(paths: impl IntoIterator<Item = &'a Path>, size: usize) -> Result<Self> {
        let mut pixels = Vec::new();
        for path in paths {
            let picture =
                image::open(path).with_context(|| format!("reading {}", path.display()))?;
            pixels
                .push(unit_pixels(&picture, size).with_context(|| format!("{}", path.display()))?);
        }
        if pixels.is_empty() {
            bail!("no pictures to train on");
        }
        Ok(Self { size, pixels })
    }

    pub fn len(&self) -> usize {
        self.pixels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// A picture as the image encoder reads it (ImageNet-normalised).
    pub fn encoder_input(&self, index: usize) -> Vec<f32> {
        let mut chw = self.pixels[index].clone();
        normalize_unit_pixels(&mut chw);
        chw
    }

    /// The mirror image of a picture as the image encoder reads it.
    pub fn mirror_encoder_input(&self, index: usize) -> Vec<f32> {
        let mut chw = mirror(&self.pixels[index], self.size);
        normalize_unit_pixels(&mut chw);
        chw
    }

    /// A picture as the generator makes them: [-1, 1], mirrored at random.
    pub fn generator_target(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        self.randomly_mirrored(index, rng)
            .into_iter()
            .map(|v| v * 2.0 - 1.0)
            .collect()
    }

    /// A picture, or its mirror image, as the generator makes it (`[-1, 1]`): the reconstruction term's target.
    pub fn generator_pixels(&self, index: usize, mirrored: bool) -> Vec<f32> {
        let chw = if mirrored {
            mirror(&self.pixels[index], self.size)
        } else {
            self.pixels[index].clone()
        };
        chw.into_iter().map(|v| v * 2.0 - 1.0).collect()
    }

    /// A picture as the image encoder reads it, mirrored at random.
    pub fn mirrored_encoder_input(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut chw = self.randomly_mirrored(index, rng);
        normalize_unit_pixels(&mut chw);
        chw
    }

    fn randomly_mirrored(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        if rng.random_bool(0.5) {
            mirror(&self.pixels[index], self.size)
        } else {
            self.pixels[index].clone()
        }
    }

    /// One SimCLR view, ImageNet-normalised: random resized crop (8-100 % of the area), mirror, colour jitter
    /// (brightness, contrast, saturation) and random greyscale.
    pub fn simclr_view(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        let n = self.size;
        let source = &self.pixels[index];
        let area = rng.random_range(0.08..=1.0f32);
        let aspect = (rng.random_range((0.75f32).ln()..=(4.0f32 / 3.0).ln())).exp();
        let cw = ((area * aspect).sqrt() * n as f32).clamp(2.0, n as f32);
        let ch = ((area / aspect).sqrt() * n as f32).clamp(2.0, n as f32);
        let x0 = rng.random_range(0.0..=(n as f32 - cw));
        let y0 = rng.random_range(0.0..=(n as f32 - ch));
        let mirrored = rng.random_bool(0.5);
        let mut view = vec![0.0f32; 3 * n * n];
        for y in 0..n {
            for x in 0..n {
                let fx = x0 + (x as f32 + 0.5) * cw / n as f32 - 0.5;
                let fy = y0 + (y as f32 + 0.5) * ch / n as f32 - 0.5;
                let tx = if mirrored { n - 1 - x } else { x };
                for c in 0..3 {
                    view[(c * n + y) * n + tx] =
                        bilinear(&source[c * n * n..(c + 1) * n * n], n, fx, fy);
                }
            }
        }
        let brightness = rng.random_range(0.6..=1.4f32);
        let contrast = rng.random_range(0.6..=1.4f32);
        let saturation = rng.random_range(0.6..=1.4f32);
        let grey = rng.random_bool(0.2);
        let plane = n * n;
        let mean: f32 = view.iter().sum::<f32>() / view.len() as f32;
        for i in 0..plane {
            let mut rgb = [view[i], view[plane + i], view[2 * plane + i]];
            let luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            for v in &mut rgb {
                *v = if grey {
                    luma
                } else {
                    luma + (*v - luma) * saturation
                };
                *v = ((*v * brightness - mean) * contrast + mean).clamp(0.0, 1.0);
            }
            view[i] = rgb[0];
            view[plane + i] = rgb[1];
            view[2 * plane + i] = rgb[2];
        }
        normalize_unit_pixels(&mut view);
        view
    }
}

fn mirror(chw: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; chw.len()];
    for (row_in, row_out) in chw.chunks(n).zip(out.chunks_mut(n)) {
        for (o, i) in row_out.iter_mut().zip(row_in.iter().rev()) {
            *o = *i;
        }
    }
    out
}

fn bilinear(plane: &[f32], n: usize, x: f32, y: f32) -> f32 {
    let x = x.clamp(0.0, (n - 1) as f32);
    let y = y.clamp(0.0, (n - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
    let (ax, ay) = (x - x0 as f32, y - y0 as f32);
    let top = plane[y0 * n + x0] * (1.0 - ax) + plane[y0 * n + x1] * ax;
    let bottom = plane[y1 * n + x0] * (1.0 - ax) + plane[y1 * n + x1] * ax;
    top * (1.0 - ay) + bottom * ay
}

/// The paired sounds, each already at the network's 10 s / 16 kHz.
pub struct SoundBank {
    pub waveforms: Vec<Vec<f64>>,
}

impl SoundBank {
    pub fn load<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Self> {
        let waveforms = paths
            .into_iter()
            .map(|path| {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                waveform_from_bytes(&bytes, path.extension().and_then(|e| e.to_str()))
                    .with_context(|| format!("decoding {}", path.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { waveforms })
    }

    /// A training input for sound `index`: its waveform at a random gain, shifted in time, sometimes mixed
    /// with another sound at a lower level, with a little noise; then the front end's spectrogram.
    pub fn augmented_spectrogram(&self, index: usize, rng: &mut StdRng) -> Result<Spectrogram> {
        let source = &self.waveforms[index];
        let shift = rng.random_range(0..CLIP_SAMPLES);
        let gain = 10f64.powf(rng.random_range(-12.0..=6.0) / 20.0);
        let mut wave: Vec<f64> = (0..CLIP_SAMPLES)
            .map(|i| source[(i + shift) % source.len()] * gain)
            .collect();
        if self.waveforms.len() > 1 && rng.random_bool(0.3) {
            let mut other = rng.random_range(0..self.waveforms.len() - 1);
            if other >= index {
                other += 1;
            }
            let weight = rng.random_range(0.1..=0.4) * gain;
            for (w, o) in wave.iter_mut().zip(&self.waveforms[other]) {
                *w += weight * o;
            }
        }
        let rms = (wave.iter().map(|v| v * v).sum::<f64>() / wave.len() as f64).sqrt();
        let snr_db = rng.random_range(10.0..=40.0);
        let noise = Normal::new(0.0, (rms / 10f64.powf(snr_db / 20.0)).max(1e-6))
            .expect("a positive standard deviation");
        for w in &mut wave {
            *w += noise.sample(rng);
        }
        let mut wave = fit_to_length(&wave, CLIP_SAMPLES)?;
        clip_unit(&mut wave);
        Ok(log_spectrogram(&wave)?)
    }

    /// The unaugmented input, as inference computes it.
    pub fn spectrogram(&self, index: usize) -> Result<Spectrogram> {
        Ok(log_spectrogram(&self.waveforms[index])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn bank() -> PictureBank {
        // Left half red, right half blue.
        let n = 8;
        let mut chw = vec![0.0; 3 * n * n];
        for y in 0..n {
            for x in 0..n {
                if x < n / 2 {
                    chw[y * n + x] = 1.0;
                } else {
                    chw[2 * n * n + y * n + x] = 1.0;
                }
            }
        }
        PictureBank {
            size: n,
            pixels: vec![chw],
        }
    }

    #[test]
    fn the_mirror_encoder_input_is_the_encoder_input_mirrored() {
        let bank = bank();
        let n = bank.size;
        let plain = bank.encoder_input(0);
        let mirrored = bank.mirror_encoder_input(0);
        assert_ne!(plain, mirrored);
        for (row, mirrored_row) in plain.chunks(n).zip(mirrored.chunks(n)) {
            assert!(row.iter().eq(mirrored_row.iter().rev()));
        }
    }

    #[test]
    fn views_are_normalised_pictures_of_the_same_size_and_differ() {
        let bank = bank();
        let mut rng = StdRng::seed_from_u64(1);
        let a = bank.simclr_view(0, &mut rng);
        let b = bank.simclr_view(0, &mut rng);
        assert_eq!(a.len(), 3 * 64);
        assert_ne!(a, b);
        assert!(a.iter().all(|v| v.is_finite() && v.abs() < 3.0));
    }

    #[test]
    fn generator_targets_are_in_minus_one_to_one_and_mirror() {
        let bank = bank();
        let mut rng = StdRng::seed_from_u64(2);
        let targets: Vec<Vec<f32>> = (0..16)
            .map(|_| bank.generator_target(0, &mut rng))
            .collect();
        assert!(targets.iter().flatten().all(|v| (-1.0..=1.0).contains(v)));
        // Red on the left in some, on the right in others.
        let red_left = |t: &Vec<f32>| t[0] > 0.0;
        assert!(targets.iter().any(red_left) && !targets.iter().all(red_left));
    }

    #[test]
    fn augmented_sounds_keep_the_front_ends_shape() {
        let tone: Vec<f64> = (0..CLIP_SAMPLES)
            .map(|i| (i as f64 * 0.05).sin() * 0.5)
            .collect();
        let bank = SoundBank {
            waveforms: vec![tone.clone(), tone.iter().map(|v| -v).collect()],
        };
        let mut rng = StdRng::seed_from_u64(3);
        let s = bank.augmented_spectrogram(0, &mut rng).unwrap();
        assert_eq!(
            s.data.len(),
            s2v_shared::audio::FREQ_BINS * s2v_shared::audio::TIME_FRAMES
        );
        assert!(s.data.iter().all(|v| v.is_finite()));
    }
}
