//! Training inputs held in memory, and their augmentations: SimCLR's views of pictures, and the waveform
//! augmentations of the audio stage (gain, mixing, time shift, noise).

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use s2v_models::preprocess::{normalise_unit_pixels, unit_pixels};
use s2v_shared::audio::{
    CLIP_SAMPLES, Spectrogram, clip_unit, fit_to_length, log_spectrogram, waveform_from_bytes,
};
use serde::{Deserialize, Serialize};

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
        let mut chw = self.oriented(index, false);
        normalise_unit_pixels(&mut chw);
        chw
    }

    /// The mirror image of a picture as the image encoder reads it.
    pub fn mirror_encoder_input(&self, index: usize) -> Vec<f32> {
        let mut chw = self.oriented(index, true);
        normalise_unit_pixels(&mut chw);
        chw
    }

    /// A picture as the generator makes them: [-1, 1], mirrored at random.
    pub fn generator_target(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        self.generator_pixels(index, rng.random_bool(0.5))
    }

    /// A picture, or its mirror image, as the generator makes it (`[-1, 1]`): the reconstruction term's target.
    pub fn generator_pixels(&self, index: usize, mirrored: bool) -> Vec<f32> {
        self.oriented(index, mirrored)
            .into_iter()
            .map(|v| v * 2.0 - 1.0)
            .collect()
    }

    /// A picture as the image encoder reads it, mirrored at random.
    pub fn mirrored_encoder_input(&self, index: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut chw = self.oriented(index, rng.random_bool(0.5));
        normalise_unit_pixels(&mut chw);
        chw
    }

    /// A picture's values in [0, 1], as it is or mirrored.
    fn oriented(&self, index: usize, mirrored: bool) -> Vec<f32> {
        if mirrored {
            mirror(&self.pixels[index], self.size)
        } else {
            self.pixels[index].clone()
        }
    }

    /// One SimCLR view, ImageNet-normalised: random resized crop (8-100 % of the area), mirror, then the
    /// colour changes `policy` gives.
    pub fn simclr_view(&self, index: usize, policy: ViewPolicy, rng: &mut StdRng) -> Vec<f32> {
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
        match policy {
            ViewPolicy::Mild => mild_colour_change(&mut view, rng),
            ViewPolicy::Simclr => simclr_colour_change(&mut view, rng),
        }
        normalise_unit_pixels(&mut view);
        view
    }
}

/// Which colour changes SimCLR's views get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ViewPolicy {
    /// Brightness, contrast and saturation within +-40 % on every view, greyscale on a fifth, no change of
    /// hue: the views the shipped image encoder was trained on. Colour survives them, so colour alone can
    /// match two views.
    Mild,
    /// SimCLR's own (Chen et al. 2020, Appendix A): on 80 % of the views brightness, contrast and saturation
    /// within +-80 % and hue within +-0.2 of the colour wheel, in random order; greyscale on a fifth. Their
    /// finding is that without strong colour distortion the views are matched by their colour histograms.
    Simclr,
}

/// Applies `change` to the RGB values of each pixel of a channel-major picture.
fn for_each_pixel(view: &mut [f32], mut change: impl FnMut(&mut [f32; 3])) {
    let plane = view.len() / 3;
    for i in 0..plane {
        let mut rgb = [view[i], view[plane + i], view[2 * plane + i]];
        change(&mut rgb);
        view[i] = rgb[0];
        view[plane + i] = rgb[1];
        view[2 * plane + i] = rgb[2];
    }
}

fn luma(rgb: &[f32; 3]) -> f32 {
    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
}

/// The mean grey level of a channel-major picture.
fn mean_luma(view: &[f32]) -> f32 {
    let plane = view.len() / 3;
    let (r, g, b) = (&view[..plane], &view[plane..2 * plane], &view[2 * plane..]);
    let sum: f32 = (0..plane).map(|i| luma(&[r[i], g[i], b[i]])).sum();
    sum / plane.max(1) as f32
}

/// `ViewPolicy::Mild`.
fn mild_colour_change(view: &mut [f32], rng: &mut StdRng) {
    let brightness = rng.random_range(0.6..=1.4f32);
    let contrast = rng.random_range(0.6..=1.4f32);
    let saturation = rng.random_range(0.6..=1.4f32);
    let grey = rng.random_bool(0.2);
    let mean: f32 = view.iter().sum::<f32>() / view.len() as f32;
    for_each_pixel(view, |rgb| {
        let l = luma(rgb);
        for v in rgb.iter_mut() {
            *v = if grey { l } else { l + (*v - l) * saturation };
            *v = ((*v * brightness - mean) * contrast + mean).clamp(0.0, 1.0);
        }
    });
}

/// `ViewPolicy::Simclr`, with torchvision's `ColorJitter(0.8, 0.8, 0.8, 0.2)` arithmetic (contrast about the
/// mean grey level, hue turned in HSV).
fn simclr_colour_change(view: &mut [f32], rng: &mut StdRng) {
    use rand::seq::SliceRandom;
    if rng.random_bool(0.8) {
        let brightness = rng.random_range(0.2..=1.8f32);
        let contrast = rng.random_range(0.2..=1.8f32);
        let saturation = rng.random_range(0.2..=1.8f32);
        let hue = rng.random_range(-0.2..=0.2f32);
        let mut order = [0, 1, 2, 3];
        order.shuffle(rng);
        for change in order {
            match change {
                0 => for_each_pixel(view, |rgb| {
                    rgb.iter_mut()
                        .for_each(|v| *v = (*v * brightness).clamp(0.0, 1.0))
                }),
                1 => {
                    let mean = mean_luma(view);
                    for_each_pixel(view, |rgb| {
                        rgb.iter_mut()
                            .for_each(|v| *v = ((*v - mean) * contrast + mean).clamp(0.0, 1.0))
                    });
                }
                2 => for_each_pixel(view, |rgb| {
                    let l = luma(rgb);
                    rgb.iter_mut()
                        .for_each(|v| *v = (l + (*v - l) * saturation).clamp(0.0, 1.0))
                }),
                _ => for_each_pixel(view, |rgb| *rgb = turn_hue(*rgb, hue)),
            }
        }
    }
    if rng.random_bool(0.2) {
        for_each_pixel(view, |rgb| *rgb = [luma(rgb); 3]);
    }
}

/// `rgb` (values in [0, 1]) with its HSV hue turned by `turn` of the colour wheel.
fn turn_hue(rgb: [f32; 3], turn: f32) -> [f32; 3] {
    use palette::{FromColor, Hsv, Srgb};
    let mut hsv = Hsv::from_color(Srgb::new(rgb[0], rgb[1], rgb[2]));
    hsv.hue += turn * 360.0;
    let out = Srgb::from_color(hsv);
    [
        out.red.clamp(0.0, 1.0),
        out.green.clamp(0.0, 1.0),
        out.blue.clamp(0.0, 1.0),
    ]
}

pub(crate) fn mirror(chw: &[f32], n: usize) -> Vec<f32> {
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
    use s2v_models::preprocess::{MEAN, STD};

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
        for policy in [ViewPolicy::Mild, ViewPolicy::Simclr] {
            let a = bank.simclr_view(0, policy, &mut rng);
            let b = bank.simclr_view(0, policy, &mut rng);
            assert_eq!(a.len(), 3 * 64);
            assert_ne!(a, b);
            assert!(a.iter().all(|v| v.is_finite() && v.abs() < 3.0));
        }
    }

    #[test]
    fn only_simclr_views_turn_the_hue() {
        // A plain orange-red picture: mild views keep red the strongest channel (or grey), SimCLR's turn the
        // hue of some views so that green or blue leads.
        let n = 8;
        let mut chw = vec![0.0f32; 3 * n * n];
        chw[..n * n].fill(0.9);
        chw[n * n..2 * n * n].fill(0.3);
        chw[2 * n * n..].fill(0.1);
        let bank = PictureBank {
            size: n,
            pixels: vec![chw],
        };
        let red_leads = |view: &[f32]| {
            // Back from ImageNet normalisation to [0, 1] for the first pixel.
            let rgb: Vec<f32> = (0..3).map(|c| view[c * n * n] * STD[c] + MEAN[c]).collect();
            rgb[0] + 1e-4 >= rgb[1] && rgb[0] + 1e-4 >= rgb[2]
        };
        let mut rng = StdRng::seed_from_u64(3);
        let led = |policy, rng: &mut StdRng| -> usize {
            (0..200)
                .filter(|_| red_leads(&bank.simclr_view(0, policy, rng)))
                .count()
        };
        assert_eq!(led(ViewPolicy::Mild, &mut rng), 200);
        let simclr = led(ViewPolicy::Simclr, &mut rng);
        assert!(
            (60..190).contains(&simclr),
            "{simclr} of 200 SimCLR views still red"
        );
    }

    #[test]
    fn a_third_of_a_turn_takes_red_to_green() {
        let green = turn_hue([1.0, 0.0, 0.0], 1.0 / 3.0);
        assert!(
            green
                .iter()
                .zip([0.0, 1.0, 0.0])
                .all(|(a, b)| (a - b).abs() < 1e-5),
            "{green:?}"
        );
        let same = turn_hue([0.2, 0.5, 0.7], 1.0);
        assert!(
            same.iter()
                .zip([0.2, 0.5, 0.7])
                .all(|(a, b)| (a - b).abs() < 1e-5),
            "{same:?}"
        );
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
