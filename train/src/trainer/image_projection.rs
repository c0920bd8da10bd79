//! A linear projection of a frozen pretrained image encoder's features, trained by supervised contrastive
//! learning (Khosla et al. 2020) on the labelled training pictures, the mirror image as each picture's second
//! view. An ImageNet network's features place pictures by what ImageNet taught it; the projection keeps the
//! directions along which the data set's own labels differ, so that a picture's nearest neighbours more often
//! show the same thing (IC-GAN's instance neighbourhoods, and what the audio encoder is pulled towards).
//!
//! Only the projection learns: the encoder's features are computed once and cached, so the projection trains
//! in seconds and is trained again, from the same seed, whenever a run starts or resumes.

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::Rng;
use rand::seq::index::sample;
use s2v_models::ImageEncoder;
use s2v_models::loss::supervised_contrastive;

use super::pairing::picture_classes;
use super::{Stage, TrainOptions, seed_stage, step_rng};
use crate::dataset::Dataset;
use crate::image_features::{CACHE_DIR, FrozenFeatures};

/// The schedule, as the cross-validated probe chose it (`docs/experiments.md`).
const STEPS: usize = 1000;
/// Pictures per step (twice as many views).
const BATCH: usize = 128;
const LEARNING_RATE: f64 = 1e-3;
const WEIGHT_DECAY: f32 = 0.01;
const TEMPERATURE: f64 = 0.1;

/// `encoder` with a projection to `width` trained on `dataset`'s labelled training pictures.
pub fn attach<B: AutodiffBackend>(
    encoder: ImageEncoder<B::InnerBackend>,
    width: usize,
    dataset: &Dataset,
    options: &TrainOptions,
    device: &B::Device,
) -> Result<ImageEncoder<B::InnerBackend>> {
    let labelled: Vec<_> = dataset
        .training_images()
        .into_iter()
        .filter(|(_, item)| !item.label.is_empty())
        .collect();
    let items: Vec<_> = labelled.iter().map(|(_, item)| *item).collect();
    let classes = picture_classes(&items);
    if classes.iter().max().is_none_or(|&most| most == 0) {
        bail!("an image projection needs labelled training pictures of at least two labels");
    }
    let files: Vec<_> = labelled.iter().map(|(path, _)| path.clone()).collect();
    let (plain, mirrored) = {
        let mut features = FrozenFeatures::cached(&encoder, &options.data.join(CACHE_DIR), device);
        (features.of(&files, false)?, features.of(&files, true)?)
    };
    let views = Views::new(&plain, &mirrored);
    seed_stage::<B>(device, options.seed, Stage::ImageEncoder);
    let projection = train::<B>(&views, &classes, width, options.seed, device);
    eprintln!(
        "image projection: {} -> {width} trained on {} labelled training pictures",
        views.width,
        files.len()
    );
    Ok(encoder.with_projection(views.fold_centring(projection))?)
}

/// The two views of every picture, centred on the plain views' mean (which the projection's bias then
/// absorbs).
struct Views {
    plain: Vec<f32>,
    mirrored: Vec<f32>,
    mean: Vec<f32>,
    width: usize,
    count: usize,
}

impl Views {
    fn new(plain: &[Vec<f32>], mirrored: &[Vec<f32>]) -> Self {
        let (count, width) = (plain.len(), plain.first().map_or(0, Vec::len));
        let mut mean = vec![0.0; width];
        for row in plain {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / count as f32;
            }
        }
        let centred = |rows: &[Vec<f32>]| -> Vec<f32> {
            rows.iter()
                .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
                .collect()
        };
        Self {
            plain: centred(plain),
            mirrored: centred(mirrored),
            mean,
            width,
            count,
        }
    }

    fn rows<B: Backend>(&self, from: &[f32], picks: &[usize], device: &B::Device) -> Tensor<B, 2> {
        let data: Vec<f32> = picks
            .iter()
            .flat_map(|&i| &from[i * self.width..(i + 1) * self.width])
            .copied()
            .collect();
        Tensor::from_data(TensorData::new(data, [picks.len(), self.width]), device)
    }

    /// The projection of uncentred features: `(x - mean) W + b = x W + (b - mean W)`.
    fn fold_centring<B: Backend>(&self, projection: Linear<B>) -> Linear<B> {
        let device = projection.weight.device();
        let mean =
            Tensor::<B, 2>::from_data(TensorData::new(self.mean.clone(), [1, self.width]), &device);
        let shift = mean.matmul(projection.weight.val());
        let [_, out] = shift.dims();
        let bias = match &projection.bias {
            Some(bias) => bias.val() - shift.reshape([out]),
            None => shift.reshape([out]).neg(),
        };
        Linear {
            bias: Some(burn::module::Param::from_tensor(bias)),
            ..projection
        }
    }
}

fn train<B: AutodiffBackend>(
    views: &Views,
    classes: &[usize],
    width: usize,
    seed: u64,
    device: &B::Device,
) -> Linear<B::InnerBackend> {
    let mut projection: Linear<B> = LinearConfig::new(views.width, width).init(device);
    let mut optimiser = AdamWConfig::new()
        .with_weight_decay(WEIGHT_DECAY)
        .init::<B, Linear<B>>();
    let batch = BATCH.min(views.count);
    for step in 0..STEPS {
        let mut rng = step_rng(seed, Stage::ImageEncoder, step);
        let picks = sample(&mut rng, views.count, batch).into_vec();
        // Mirror views are drawn as the first or second view at random, so neither side learns an orientation.
        let (first, second) = if rng.random::<bool>() {
            (&views.plain, &views.mirrored)
        } else {
            (&views.mirrored, &views.plain)
        };
        let batch_classes: Vec<usize> = picks.iter().map(|&i| classes[i]).collect();
        let loss = supervised_contrastive(
            projection.forward(views.rows(first, &picks, device)),
            projection.forward(views.rows(second, &picks, device)),
            &batch_classes,
            TEMPERATURE,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &projection);
        projection = optimiser.step(LEARNING_RATE, projection, grads);
    }
    projection.valid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::neighbours::same_label_share;
    use burn::backend::{Autodiff, Flex};
    use rand::SeedableRng;

    #[test]
    fn labels_become_dense_classes_in_order_of_first_appearance() {
        let item = |label: &str| crate::dataset::Item {
            name: label.into(),
            category: String::new(),
            label: label.into(),
            source: String::new(),
            licence: String::new(),
            split: crate::dataset::Split::Train,
        };
        let items = [item("cow"), item("dog"), item("cow"), item("bell")];
        let classes = picture_classes(&items.iter().collect::<Vec<_>>());
        assert_eq!(classes, [0, 1, 0, 2]);
    }

    #[test]
    fn the_folded_projection_of_raw_features_equals_the_trained_one_of_centred_features() {
        let plain = vec![vec![1.0, 2.0, 3.0], vec![3.0, 0.0, -1.0]];
        let views = Views::new(&plain, &plain);
        assert_eq!(views.mean, [2.0, 1.0, 1.0]);
        let device = Default::default();
        let projection: Linear<Flex> = LinearConfig::new(3, 2).init(&device);
        let centred = projection.forward(views.rows::<Flex>(&views.plain, &[0, 1], &device));
        let raw = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![1.0, 2.0, 3.0, 3.0, 0.0, -1.0], [2, 3]),
            &device,
        );
        let folded = views.fold_centring(projection).forward(raw);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            centred.into_data().to_vec().unwrap(),
            folded.into_data().to_vec().unwrap(),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{a:?} against {b:?}"
        );
    }

    #[test]
    fn training_pulls_pictures_of_one_label_together() {
        // Two labels whose features differ only in the first coordinate, buried under large noise in the others.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let mut row: Vec<f32> = (0..16).map(|_| rng.random_range(-3.0..3.0)).collect();
                row[0] = if i % 2 == 0 { 0.5 } else { -0.5 };
                row
            })
            .collect();
        let classes: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let views = Views::new(&rows, &rows);
        let device = Default::default();
        let projection = train::<Autodiff<Flex>>(&views, &classes, 4, 0, &device);
        let projection = views.fold_centring(projection);
        // Each picture's nearest other picture, by cosine, as the evaluation measures it.
        let share = |features: Vec<Vec<f32>>| {
            let unit = crate::eval::normalised(&features);
            same_label_share(&unit, &classes, &unit, &classes, |q, k| q != k)
        };
        let raw = Tensor::<Flex, 2>::from_data(TensorData::new(rows.concat(), [40, 16]), &device);
        let projected: Vec<f32> = projection.forward(raw).into_data().to_vec().unwrap();
        let before = share(rows.clone());
        let after = share(projected.chunks(4).map(<[f32]>::to_vec).collect());
        assert!(
            after >= 0.9 && after > before,
            "nearest-neighbour share {before} -> {after}"
        );
    }
}
