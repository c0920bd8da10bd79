//! The judge of the evaluation: a category classifier trained on the training pictures only, separately from
//! the generator stack (its own randomly initialised network, supervised with the categories that neither the
//! encoders nor the generator ever see).

use std::path::Path;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use s2v_models::{ResNetImageEncoder, ResNetImageEncoderConfig};

use crate::trainer::data::PictureBank;
use crate::trainer::{Recorder, images_tensor};

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    pub backbone: ResNetImageEncoder<B>,
    pub head: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    fn init(classes: usize, size: usize, device: &B::Device) -> Result<Self> {
        let config = ResNetImageEncoderConfig {
            in_channels: 3,
            stem_width: 16,
            stage_widths: vec![16, 32, 64, 128],
            stage_outputs: vec![32, 64, 128, 256],
            blocks_per_stage: vec![1, 1, 1, 1],
            input_size: size,
        };
        Ok(Self {
            backbone: ResNetImageEncoder::init(&config, device)?,
            head: LinearConfig::new(config.feature_dim(), classes).init(device),
        })
    }

    /// ImageNet-normalised pictures to class logits.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.backbone.forward(images))
    }
}

/// Trains the classifier on `(picture, class)` pairs with class-balanced batches and mirrored pictures, or
/// loads it from `cache` when an earlier run saved it there.
pub fn train_or_load<B: AutodiffBackend>(
    pictures: &PictureBank,
    labels: &[usize],
    classes: usize,
    steps: usize,
    seed: u64,
    cache: &Path,
    device: &B::Device,
) -> Result<Classifier<B::InnerBackend>> {
    let size = pictures.size;
    let mut model = Classifier::<B>::init(classes, size, device)?;
    if cache.with_extension("mpk").exists() {
        return Ok(model.load_file(cache, &Recorder::new(), device)?.valid());
    }
    let by_class: Vec<Vec<usize>> = (0..classes)
        .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
        .collect();
    let present: Vec<usize> = (0..classes).filter(|&c| !by_class[c].is_empty()).collect();
    anyhow::ensure!(
        !present.is_empty(),
        "no labelled pictures for the classifier"
    );
    let mut optimiser = AdamConfig::new().init::<B, Classifier<B>>();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>13} {bar:30} {pos}/{len} [{eta_precise} left] {msg}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix("classifier");
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC1A5);
    for _ in 0..steps {
        let batch = 32;
        let mut rows = Vec::with_capacity(batch);
        let mut targets = Vec::with_capacity(batch);
        for _ in 0..batch {
            let class = present[rng.random_range(0..present.len())];
            let index = by_class[class][rng.random_range(0..by_class[class].len())];
            rows.push(pictures.mirrored_encoder_input(index, &mut rng));
            targets.push(class as i64);
        }
        let x = images_tensor::<B>(rows, size, device);
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [batch]), device);
        let loss = loss_fn.forward(model.forward(x), y);
        bar.set_message(format!(
            "cross-entropy {:.3}",
            loss.clone().into_scalar().elem::<f32>()
        ));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimiser.step(1e-3, model, grads);
        bar.inc(1);
    }
    bar.finish();
    model.clone().save_file(cache, &Recorder::new())?;
    Ok(model.valid())
}

/// Logits for pictures given in [-1, 1] (the generator's range), in batches.
pub fn classify<B: Backend>(
    classifier: &Classifier<B>,
    images_in_unit_range: &[Vec<f32>],
    size: usize,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for chunk in images_in_unit_range.chunks(32) {
        let rows: Vec<Vec<f32>> = chunk
            .iter()
            .map(|chw| {
                let mut unit: Vec<f32> = chw.iter().map(|v| (v + 1.0) / 2.0).collect();
                s2v_models::preprocess::normalise_unit_pixels(&mut unit);
                unit
            })
            .collect();
        let logits = classifier.forward(images_tensor::<B>(rows, size, device));
        let [n, c] = logits.dims();
        let values = logits
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        out.extend((0..n).map(|i| values[i * c..(i + 1) * c].to_vec()));
    }
    Ok(out)
}

/// The rank of `class` among the logits (0 = the top guess).
pub fn rank_of(logits: &[f32], class: usize) -> usize {
    logits.iter().filter(|&&v| v > logits[class]).count()
}
