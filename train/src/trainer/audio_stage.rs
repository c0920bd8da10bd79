//! Stage (c): the audio encoder, trained with the paper's loss (symmetric InfoNCE over minus Euclidean
//! distances of L2-normalised features) against the frozen image encoder's features of the paired pictures
//! (for a sound without a picture of its own, a picture of its fine label drawn each step); Adam 1e-3 with
//! weight decay 1e-5, as Sound2Scene trains.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use s2v_models::loss::info_nce_l2;
use s2v_models::{AudioEncoder, NetworkModule};
use s2v_shared::audio::{FREQ_BINS, TIME_FRAMES};

use std::path::PathBuf;

use super::data::{SoundBank, par_samples};
use super::pairing::sound_targets;
use super::{
    Stage, StageLoop, TrainOptions, load_module, load_optimiser, save_module, save_optimiser,
    scalar, seed_stage, selected_rows,
};
use crate::dataset::{Dataset, Item};
use crate::image_features::FrozenFeatures;

const LEARNING_RATE: f64 = 1e-3;

pub(super) fn run<B: AutodiffBackend>(
    options: &TrainOptions,
    dataset: &Dataset,
    training_pictures: &[(PathBuf, &Item)],
    features: &mut FrozenFeatures<B::InnerBackend>,
    device: &B::Device,
) -> Result<Option<AudioEncoder<B::InnerBackend>>> {
    let recipe = &options.recipe;
    let mut stage = StageLoop::new(Stage::AudioEncoder, options, recipe.audio_steps)?;
    let items: Vec<&Item> = training_pictures.iter().map(|(_, item)| *item).collect();
    let matched = sound_targets(dataset, &items);
    if !matched.unmatched.is_empty() {
        eprintln!(
            "{} training sounds have no training picture of their label and are left out: {}",
            matched.unmatched.len(),
            matched.unmatched.join(", ")
        );
    }
    let sounds = SoundBank::load(matched.sounds.iter().map(PathBuf::as_path))?;
    let files: Vec<PathBuf> = training_pictures
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    let targets = features.of(&files, false)?;

    seed_stage::<B>(device, options.seed, Stage::AudioEncoder);
    let mut model = AudioEncoder::<B>::init(&recipe.audio_encoder, device)?;
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
        let visual = selected_rows::<B>(&targets, &pictures, device);
        let loss = info_nce_l2(model.forward(x), visual);
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
