//! Stage (c): the audio encoder, trained with the paper's loss (symmetric InfoNCE over minus Euclidean
//! distances of L2-normalised features) against the frozen image encoder's features of the paired pictures
//! (for a sound without a picture of its own, a picture of its fine label drawn each step); Adam 1e-3 with
//! weight decay 1e-5, as Sound2Scene trains. Sound2Vision's encoder trains the same way against given
//! embeddings of the pictures (a CLIP image encoder's), with `fc2` and the loss on unnormalised features.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use s2v_models::loss::{info_nce_euclidean, info_nce_l2};
use s2v_models::{AudioEncoder, AudioEncoderConfig, NetworkModule};
use s2v_shared::audio::{FREQ_BINS, TIME_FRAMES};

use std::path::PathBuf;

use super::data::{SoundBank, par_samples};
use super::pairing::sound_targets;
use super::{
    Stage, StageLoop, TrainOptions, load_module, load_optimiser, save_module, save_optimiser,
    scalar, seed_stage, selected_rows,
};
use crate::dataset::{Dataset, Item, Split};

const LEARNING_RATE: f64 = 1e-3;

/// Which of the paper's two losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioLoss {
    /// Over L2-normalised features (Sound2Scene, against the image encoder's features).
    Sound2Scene,
    /// Over the features as they are (Sound2Vision, against CLIP's image embeddings).
    Sound2Vision,
}

/// What the audio encoder learns to reach: a row per training picture, the encoder that reaches it and the
/// loss that measures it.
pub(super) struct AudioTargets<'a> {
    pub pictures: &'a [(PathBuf, &'a Item)],
    pub rows: Vec<Vec<f32>>,
    pub encoder: AudioEncoderConfig,
    pub loss: AudioLoss,
}

/// `--target-embeddings`: Sound2Vision's audio encoder against given embeddings of the pictures, saved as the
/// run's audio encoder. Returns whether it finished.
pub(super) fn train_to_embeddings<B: AutodiffBackend>(
    options: &TrainOptions,
    dataset: &Dataset,
    embeddings: &std::path::Path,
    device: &B::Device,
) -> Result<bool> {
    let listed = dataset.listed_pictures();
    let table: ndarray::ArrayD<f32> = ndarray_npy::read_npy(embeddings).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} as a float32 .npy file: {e}",
            embeddings.display()
        )
    })?;
    let [rows, width] = table.shape()[..] else {
        anyhow::bail!(
            "{} must be N x D, not {:?}",
            embeddings.display(),
            table.shape()
        );
    };
    anyhow::ensure!(
        rows == listed.len() && width > 0,
        "{} has {rows} rows, but the data set lists {} pictures (`s2v data pictures --data {}` lists them in \
         order)",
        embeddings.display(),
        listed.len(),
        options.data.display()
    );
    anyhow::ensure!(
        table.iter().all(|v| v.is_finite()),
        "{} holds non-finite values",
        embeddings.display()
    );
    let row_of: std::collections::HashMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, (_, item))| (item.name.as_str(), i))
        .collect();
    let pictures: Vec<(PathBuf, &Item)> = listed
        .iter()
        .filter(|(_, item)| item.split == Split::Train)
        .cloned()
        .collect();
    let rows = pictures
        .iter()
        .map(|(_, item)| {
            table
                .index_axis(ndarray::Axis(0), row_of[item.name.as_str()])
                .iter()
                .copied()
                .collect()
        })
        .collect();
    let targets = AudioTargets {
        pictures: &pictures,
        rows,
        encoder: AudioEncoderConfig {
            embedding_dim: width,
            fc2: true,
            ..options.recipe.audio_encoder.clone()
        },
        loss: AudioLoss::Sound2Vision,
    };
    std::fs::create_dir_all(&options.out)?;
    let Some(encoder) = run::<B>(options, dataset, &targets, device)? else {
        return Ok(false);
    };
    s2v_models::checkpoint::save_native(
        &encoder,
        &options.out.join(super::AUDIO_ENCODER_FILE),
        false,
    )?;
    Ok(true)
}

pub(super) fn run<B: AutodiffBackend>(
    options: &TrainOptions,
    dataset: &Dataset,
    targets: &AudioTargets<'_>,
    device: &B::Device,
) -> Result<Option<AudioEncoder<B::InnerBackend>>> {
    let recipe = &options.recipe;
    let mut stage = StageLoop::new(Stage::AudioEncoder, options, recipe.audio_steps)?;
    let items: Vec<&Item> = targets.pictures.iter().map(|(_, item)| *item).collect();
    let matched = sound_targets(dataset, &items);
    if !matched.unmatched.is_empty() {
        eprintln!(
            "{} training sounds have no training picture of their label and are left out: {}",
            matched.unmatched.len(),
            matched.unmatched.join(", ")
        );
    }
    let sounds = SoundBank::load(matched.sounds.iter().map(PathBuf::as_path))?;

    seed_stage::<B>(device, options.seed, Stage::AudioEncoder);
    let mut model = AudioEncoder::<B>::init(&targets.encoder, device)?;
    let mut optimiser = AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(1e-5)))
        .init::<B, AudioEncoder<B>>();
    // "optimizer": the name earlier runs' checkpoints have, so that they resume.
    let (weights, state) = (stage.dir().join("model"), stage.dir().join("optimizer"));
    if stage.resuming() {
        model = load_module(model, &weights.with_extension("mpk"), device)?;
        optimiser = load_optimiser(optimiser, &state.with_extension("mpk"), device)?;
    }
    // InfoNCE needs other pairs in the batch to contrast with.
    anyhow::ensure!(
        sounds.waveforms.len() >= 2,
        "the audio stage needs at least two training pairs, the data set has {}",
        sounds.waveforms.len()
    );
    let batch = recipe.audio_batch.clamp(2, sounds.waveforms.len());
    while let Some((_, mut rng)) = stage.next_step() {
        let mut order: Vec<usize> = (0..sounds.waveforms.len()).collect();
        order.shuffle(&mut rng);
        let chosen = &order[..batch];
        let mut spectrograms = Vec::with_capacity(batch * FREQ_BINS * TIME_FRAMES);
        for spectrogram in par_samples(chosen, &mut rng, |i, rng| {
            sounds.augmented_spectrogram(i, rng)
        }) {
            spectrograms.extend(spectrogram?.data);
        }
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(spectrograms, [batch, 1, FREQ_BINS, TIME_FRAMES]),
            device,
        );
        let pictures: Vec<usize> = chosen
            .iter()
            .map(|&sound| matched.targets[sound].draw(&mut rng))
            .collect();
        let visual = selected_rows::<B>(&targets.rows, &pictures, device);
        let loss = match targets.loss {
            AudioLoss::Sound2Scene => info_nce_l2(model.forward(x), visual),
            AudioLoss::Sound2Vision => info_nce_euclidean(model.forward(x), visual),
        };
        let value = scalar(&loss);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimiser.step(LEARNING_RATE, model, grads);
        if stage.record(&[("info-nce", value)]) {
            save_module(&model, &weights)?;
            save_optimiser(&optimiser, &state)?;
            stage.commit()?;
        }
    }
    let done = stage.finished();
    stage.finish();
    Ok(done.then(|| model.valid()))
}
