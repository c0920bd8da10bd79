//! DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"), which IC-GAN's
//! code carries: every image the discriminator sees, real or generated, gets a random colour change,
//! translation and cutout made of differentiable tensor operations. With a few thousand pictures the
//! discriminator otherwise memorises them within a few hundred steps, and its verdicts stop teaching the
//! generator; because the operations are differentiable, the generator is still trained through them.
//! The paper's ratios (1/8 shift, cutout of half the side); the policy picks which of the three apply.

use burn::prelude::*;
use burn::tensor::ops::PadMode;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Which of DiffAugment's transforms the discriminator's images get. The names are DiffAugment's own
/// (`color`, not the colour this project writes elsewhere), as recipes and flags spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentPolicy {
    /// None: the discriminator sees the images as they are.
    Off,
    /// Translation only, as IC-GAN's configuration for COCO-Stuff (its small data set) has it.
    Translation,
    /// DiffAugment's `color,translation,cutout`, its policy for the smallest data sets.
    ColorTranslationCutout,
}

/// One draw of augmentations for a batch: each image gets its own.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffAugment {
    policy: AugmentPolicy,
    size: usize,
    /// Added to every pixel, in [-0.5, 0.5).
    brightness: Vec<f32>,
    /// Scales each pixel's distance from its grey value, in [0, 2).
    saturation: Vec<f32>,
    /// Scales the distance from the image's mean, in [0.5, 1.5).
    contrast: Vec<f32>,
    /// Shift (rows, columns) in [-shift, shift]; the uncovered border becomes 0 (mid-grey in [-1, 1]).
    translation: Vec<(i64, i64)>,
    /// Top-left corner (row, column) of the zeroed square, possibly partly outside the image.
    cutout: Vec<(i64, i64)>,
}

impl DiffAugment {
    /// Draws augmentations for `batch` images of `size` x `size` pixels. Every transform is drawn whatever
    /// the policy, so that the random stream after a draw does not depend on it.
    pub fn draw(policy: AugmentPolicy, batch: usize, size: usize, rng: &mut StdRng) -> Self {
        let shift = Self::shift_limit(size) as i64;
        let half_cut = (Self::cutout_side(size) / 2) as i64;
        let mut per_image = |low: f32, high: f32| -> Vec<f32> {
            (0..batch).map(|_| rng.random_range(low..high)).collect()
        };
        let brightness = per_image(-0.5, 0.5);
        let saturation = per_image(0.0, 2.0);
        let contrast = per_image(0.5, 1.5);
        let translation = (0..batch)
            .map(|_| {
                (
                    rng.random_range(-shift..=shift),
                    rng.random_range(-shift..=shift),
                )
            })
            .collect();
        // The square's centre lies anywhere in the image, so it may be cut by the border.
        let cutout = (0..batch)
            .map(|_| {
                (
                    rng.random_range(0..size as i64) - half_cut,
                    rng.random_range(0..size as i64) - half_cut,
                )
            })
            .collect();
        Self {
            policy,
            size,
            brightness,
            saturation,
            contrast,
            translation,
            cutout,
        }
    }

    fn shift_limit(size: usize) -> usize {
        (size + 4) / 8
    }

    fn cutout_side(size: usize) -> usize {
        size.div_ceil(2)
    }

    /// Applies the draw to images `[N, C, size, size]` (N as drawn).
    pub fn apply<B: Backend>(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, channels, height, width] = images.dims();
        assert!(
            n == self.brightness.len() && height == self.size && width == self.size,
            "DiffAugment drawn for {} images of {}px, applied to {:?}",
            self.brightness.len(),
            self.size,
            images.dims()
        );
        if self.policy == AugmentPolicy::Off {
            return images;
        }
        let device = images.device();
        let per_image = |values: &[f32]| {
            Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [n]), &device)
                .reshape([n, 1, 1, 1])
        };
        let full = self.policy == AugmentPolicy::ColorTranslationCutout;
        let mut x = images;
        if full {
            x = x + per_image(&self.brightness);
            let grey = x.clone().mean_dim(1);
            x = (x - grey.clone()) * per_image(&self.saturation) + grey;
            let mean = x.clone().mean_dim(1).mean_dim(2).mean_dim(3);
            x = (x - mean.clone()) * per_image(&self.contrast) + mean;
        }

        let shift = Self::shift_limit(self.size);
        let padded = x.pad((shift, shift, shift, shift), PadMode::Constant(0.0));
        let shifted = self
            .translation
            .iter()
            .enumerate()
            .map(|(i, &(dy, dx))| {
                let top = (shift as i64 - dy) as usize;
                let left = (shift as i64 - dx) as usize;
                padded
                    .clone()
                    .slice([i..i + 1, 0..channels, top..top + height, left..left + width])
            })
            .collect();
        x = Tensor::cat(shifted, 0);
        if !full {
            return x;
        }
        x * Tensor::<B, 4>::from_data(
            TensorData::new(self.cutout_mask(), [n, 1, height, width]),
            &device,
        )
    }

    /// 1 where an image is kept, 0 inside its cutout square.
    fn cutout_mask(&self) -> Vec<f32> {
        let side = Self::cutout_side(self.size) as i64;
        let size = self.size as i64;
        let mut mask = vec![1.0f32; self.cutout.len() * self.size * self.size];
        for (i, &(top, left)) in self.cutout.iter().enumerate() {
            for row in top.max(0)..(top + side).min(size) {
                for column in left.max(0)..(left + side).min(size) {
                    mask[(i as i64 * size * size + row * size + column) as usize] = 0.0;
                }
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use rand::SeedableRng;

    fn identity_colours(mut draw: DiffAugment) -> DiffAugment {
        draw.brightness.fill(0.0);
        draw.saturation.fill(1.0);
        draw.contrast.fill(1.0);
        draw
    }

    #[test]
    fn translation_moves_the_picture_and_fills_the_border_with_zero() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut draw = identity_colours(DiffAugment::draw(
            AugmentPolicy::ColorTranslationCutout,
            1,
            8,
            &mut rng,
        ));
        draw.translation = vec![(1, -1)];
        draw.cutout = vec![(-100, -100)];
        let values: Vec<f32> = (0..64).map(|v| v as f32 / 64.0).collect();
        let image = Tensor::<Flex, 4>::from_data(
            TensorData::new(values.clone(), [1, 1, 8, 8]),
            &Default::default(),
        );
        let out: Vec<f32> = draw.apply(image).into_data().to_vec().unwrap();
        // Down one row, left one column: out[r][c] = in[r - 1][c + 1].
        for r in 0..8 {
            for c in 0..8 {
                let expected = if r == 0 || c == 7 {
                    0.0
                } else {
                    values[(r - 1) * 8 + c + 1]
                };
                assert!((out[r * 8 + c] - expected).abs() < 1e-6, "({r}, {c})");
            }
        }
    }

    #[test]
    fn cutout_zeroes_a_square_of_half_the_side_clipped_by_the_border() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut draw = identity_colours(DiffAugment::draw(
            AugmentPolicy::ColorTranslationCutout,
            2,
            8,
            &mut rng,
        ));
        draw.translation = vec![(0, 0); 2];
        draw.cutout = vec![(2, 3), (-2, 6)];
        let image = Tensor::<Flex, 4>::ones([2, 3, 8, 8], &Default::default());
        let out: Vec<f32> = draw.apply(image).into_data().to_vec().unwrap();
        let zeros = |i: usize| {
            out[i * 192..i * 192 + 64]
                .iter()
                .filter(|v| **v == 0.0)
                .count()
        };
        assert_eq!(zeros(0), 16, "a whole 4 x 4 square");
        assert_eq!(zeros(1), 2 * 2, "rows 0-1, columns 6-7");
        assert_eq!(out[2 * 8 + 3], 0.0);
        assert_eq!(out[2 * 8 + 2], 1.0);
    }

    #[test]
    fn colour_changes_follow_the_draw_and_gradients_flow() {
        type B = Autodiff<Flex>;
        let mut rng = StdRng::seed_from_u64(3);
        let mut draw = DiffAugment::draw(AugmentPolicy::ColorTranslationCutout, 1, 8, &mut rng);
        draw.translation = vec![(0, 0)];
        draw.cutout = vec![(-100, -100)];
        draw.brightness = vec![0.25];
        draw.saturation = vec![0.0];
        draw.contrast = vec![1.0];
        // Saturation 0 leaves each pixel's grey value: the channel mean plus the brightness.
        let values: Vec<f32> = (0..192).map(|v| (v % 7) as f32 / 7.0 - 0.5).collect();
        let image = Tensor::<B, 4>::from_data(
            TensorData::new(values.clone(), [1, 3, 8, 8]),
            &Default::default(),
        )
        .require_grad();
        let out = draw.apply(image.clone());
        let got: Vec<f32> = out.clone().into_data().to_vec().unwrap();
        for p in 0..64 {
            let grey = (values[p] + values[64 + p] + values[128 + p]) / 3.0 + 0.25;
            for c in 0..3 {
                assert!((got[c * 64 + p] - grey).abs() < 1e-5);
            }
        }
        let grads = out.sum().backward();
        let grad: Vec<f32> = image.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert!(
            grad.iter().all(|g| (g - 1.0).abs() < 1e-5),
            "each pixel feeds three outputs by a third"
        );
    }

    #[test]
    fn translation_policy_only_moves_and_off_leaves_the_images() {
        let values: Vec<f32> = (0..128).map(|v| v as f32 / 128.0 - 0.5).collect();
        let image = || {
            Tensor::<Flex, 4>::from_data(
                TensorData::new(values.clone(), [2, 1, 8, 8]),
                &Default::default(),
            )
        };
        let draw = |policy| {
            let mut rng = StdRng::seed_from_u64(5);
            let mut draw = DiffAugment::draw(policy, 2, 8, &mut rng);
            draw.translation = vec![(0, 0), (0, 1)];
            draw.cutout = vec![(0, 0); 2];
            draw
        };
        let out: Vec<f32> = draw(AugmentPolicy::Translation)
            .apply(image())
            .into_data()
            .to_vec()
            .unwrap();
        // No colour change and no cutout: the first image is unchanged, the second moved a column right.
        assert_eq!(out[..64], values[..64]);
        for r in 0..8 {
            for c in 0..8 {
                let expected = if c < 1 {
                    0.0
                } else {
                    values[64 + r * 8 + c - 1]
                };
                assert_eq!(out[64 + r * 8 + c], expected, "({r}, {c})");
            }
        }
        let untouched: Vec<f32> = draw(AugmentPolicy::Off)
            .apply(image())
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(untouched, values);
        let full: Vec<f32> = draw(AugmentPolicy::ColorTranslationCutout)
            .apply(image())
            .into_data()
            .to_vec()
            .unwrap();
        assert!(
            (0..4).all(|r| (0..4).all(|c| full[r * 8 + c] == 0.0)),
            "the full policy cuts out a 4 x 4 square"
        );
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = StdRng::seed_from_u64(4);
        let draw = DiffAugment::draw(AugmentPolicy::ColorTranslationCutout, 500, 64, &mut rng);
        assert!(draw.brightness.iter().all(|v| (-0.5..0.5).contains(v)));
        assert!(draw.saturation.iter().all(|v| (0.0..2.0).contains(v)));
        assert!(draw.contrast.iter().all(|v| (0.5..1.5).contains(v)));
        assert!(
            draw.translation
                .iter()
                .all(|&(y, x)| y.abs() <= 8 && x.abs() <= 8)
        );
        assert!(
            draw.translation.iter().any(|&(y, _)| y == 8)
                && draw.translation.iter().any(|&(y, _)| y == -8)
        );
        assert!(
            draw.cutout
                .iter()
                .all(|&(y, x)| (-16..48).contains(&y) && (-16..48).contains(&x))
        );
    }
}
