//! Stage (a): the image encoder, trained with supervised contrastive learning (views of pictures of one class
//! must find each other; SimCLR when every picture is its own class); the projection head is dropped
//! afterwards.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use s2v_models::loss::supervised_contrastive;
use s2v_models::projection::ProjectionHead;
use s2v_models::{ImageEncoder, NetworkModule};

use super::data::{PictureBank, par_samples};
use super::pairing::draw_batch;
use super::{
    Stage, StageLoop, TrainOptions, images_tensor, load_module, load_optimiser, save_module,
    save_optimiser, scalar, seed_stage,
};

const LEARNING_RATE: f64 = 1e-3;
const TEMPERATURE: f64 = 0.2;

#[derive(Module, Debug)]
struct SimClr<B: Backend> {
    encoder: ImageEncoder<B>,
    head: ProjectionHead<B>,
}

/// Trains (or resumes) the stage; returns the encoder once all its steps are done.
pub(super) fn run<B: AutodiffBackend>(
    options: &TrainOptions,
    pictures: &PictureBank,
    classes: &[usize],
    device: &B::Device,
) -> Result<Option<ImageEncoder<B::InnerBackend>>> {
    let recipe = &options.recipe;
    let mut stage = StageLoop::new(Stage::ImageEncoder, options, recipe.image_steps)?;
    let feature_dim = recipe.image_encoder.feature_dim();
    seed_stage::<B>(device, options.seed, Stage::ImageEncoder);
    let mut model = SimClr {
        encoder: ImageEncoder::<B>::init(&recipe.image_encoder, device)?,
        head: ProjectionHead::init(feature_dim, feature_dim, 128.min(feature_dim), device),
    };
    let mut optimiser = AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(1e-6)))
        .init::<B, SimClr<B>>();
    // "optimizer": the name earlier runs' checkpoints have, so that they resume.
    let (weights, state) = (stage.dir().join("model"), stage.dir().join("optimizer"));
    if stage.resuming() {
        model = load_module(model, &weights.with_extension("mpk"), device)?;
        optimiser = load_optimiser(optimiser, &state.with_extension("mpk"), device)?;
    }
    let size = pictures.size;
    let batch = recipe.image_batch.min(pictures.len()).max(2);
    while let Some((_, mut rng)) = stage.next_step() {
        let chosen = draw_batch(classes, batch, recipe.image_label_pairs, &mut rng);
        let view = |i, rng: &mut _| pictures.simclr_view(i, recipe.image_views, rng);
        let first = par_samples(&chosen, &mut rng, view);
        let second = par_samples(&chosen, &mut rng, view);
        let views = images_tensor::<B>([first, second].concat(), size, device);
        let projected = model.head.forward(model.encoder.forward(views));
        let halves = projected.chunk(2, 0);
        let chosen_classes: Vec<usize> = chosen.iter().map(|&i| classes[i]).collect();
        let loss = supervised_contrastive(
            halves[0].clone(),
            halves[1].clone(),
            &chosen_classes,
            TEMPERATURE,
        );
        let value = scalar(&loss);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimiser.step(LEARNING_RATE, model, grads);
        if stage.record(&[("contrastive", value)]) {
            save_module(&model, &weights)?;
            save_optimiser(&optimiser, &state)?;
            stage.commit()?;
        }
    }
    let done = stage.finished();
    stage.finish();
    Ok(done.then(|| model.encoder.valid()))
}
