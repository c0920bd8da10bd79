//! `s2v train`: the paper's three stages in burn, at sizes two CPU cores can train.
//!
//! (a) the image encoder `f_V` without labels (SimCLR) on every training picture; (b) IC-GAN's generator and
//! discriminator, conditioned on `f_V`'s features of instances and shown their nearest neighbours as real
//! images; (c) the audio encoder `f_A` with the paper's loss against the frozen `f_V`. Each stage keeps a
//! checkpoint (weights, optimiser state, step) in the output folder and resumes from it; a finished stage is
//! skipped. Every random draw of step `s` comes from `(seed, stage, s)`, so a resumed run draws what an
//! uninterrupted one would have.

mod args;
mod audio_stage;
pub mod data;
mod diff_augment;
mod ema;
mod gan_stage;
mod image_projection;
mod image_stage;
mod pairing;

pub use args::TrainArgs;
pub use data::ViewPolicy;
pub use diff_augment::AugmentPolicy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use s2v_models::checkpoint::{save_native, write_whole};
use s2v_models::discriminator::DiscriminatorConfig;
use s2v_models::{
    AudioEncoderConfig, GeneratorConfig, ImageEncoder, ImageEncoderConfig, ResNetImageEncoderConfig,
};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Item, Split};
use crate::eval::image_encoder::image_encoder_neighbours;
use crate::eval::labelling::Labelling;
use crate::image_features::{CACHE_DIR, FrozenFeatures};
use audio_stage::{AudioLoss, AudioTargets};

/// File names of the exported networks (the project's safetensors format).
pub const IMAGE_ENCODER_FILE: &str = "image_encoder.safetensors";
pub const GENERATOR_FILE: &str = "generator.safetensors";
pub const AUDIO_ENCODER_FILE: &str = "audio_encoder.safetensors";

/// Sizes and schedule of a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    pub resolution: usize,
    pub image_encoder: ImageEncoderConfig,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    pub audio_encoder: AudioEncoderConfig,
    pub image_steps: usize,
    pub image_batch: usize,
    /// The colour changes of SimCLR's views (recipes written before this field had `mild`).
    #[serde(default = "mild_views")]
    pub image_views: ViewPolicy,
    /// What the image encoder learns from (recipes written before this field had SimCLR).
    #[serde(default)]
    pub image_objective: ImageObjective,
    /// The share of the image stage's batch drawn as pairs of pictures of one fine label (supervised
    /// contrastive learning; the rest is drawn uniformly).
    #[serde(default = "half")]
    pub image_label_pairs: f64,
    pub gan_steps: usize,
    pub gan_batch: usize,
    /// Real images for an instance are drawn from its this many nearest neighbours (IC-GAN's k).
    pub neighbours: usize,
    /// Weight of an L1 term that pulls `G(z, f_i)` towards instance `i`'s own picture, added to the
    /// generator's hinge loss; 0 trains pure IC-GAN. A small data set and a short CPU schedule leave the
    /// adversarial signal alone too weak to form objects; the term gives the generator the instance's layout
    /// and colours early, at some cost to the diversity over `z`.
    #[serde(default)]
    pub gan_reconstruction: f32,
    /// Decay of the moving average of the generator's weights that the stage exports (BigGAN's `G_ema`);
    /// 0 exports the last step's weights.
    #[serde(default)]
    pub gan_ema_decay: f64,
    /// Steps during which the average just follows the generator (BigGAN's `ema_start`).
    #[serde(default)]
    pub gan_ema_start: usize,
    /// The DiffAugment transforms every image the discriminator sees gets.
    pub gan_augment: AugmentPolicy,
    /// Adam's learning rates of the generator and the discriminator.
    #[serde(default = "default_gan_rate")]
    pub gan_generator_rate: f64,
    #[serde(default = "default_gan_rate")]
    pub gan_discriminator_rate: f64,
    /// Discriminator updates per generator update, each on a new batch (BigGAN's `num_D_steps`).
    #[serde(default = "one")]
    pub gan_discriminator_steps: usize,
    pub audio_steps: usize,
    pub audio_batch: usize,
    pub checkpoint_every: usize,
    /// With a frozen pretrained image encoder: the width of a linear projection of its features trained by
    /// supervised contrastive learning on the labelled training pictures ([`image_projection`]), which then
    /// conditions everything else; none keeps the encoder's own features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_projection: Option<usize>,
}

/// Adam's rate for the generator and its discriminator in the presets; also what recipes written before the
/// rates were a recipe's own used.
const GAN_RATE: f64 = 2e-4;

fn default_gan_rate() -> f64 {
    GAN_RATE
}

/// The image encoder's training objective.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ImageObjective {
    /// SimCLR: two views of a picture must find each other; labels are not used.
    #[default]
    Simclr,
    /// Supervised contrastive learning (Khosla et al. 2020): views of pictures of one fine label find each
    /// other; pictures without a label are SimCLR's.
    SupervisedContrastive,
}

fn half() -> f64 {
    0.5
}

fn mild_views() -> ViewPolicy {
    ViewPolicy::Mild
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The shipped default model: 64 px, 512-d features, about 25 MB of f16 weights at most.
    Default,
    /// Minute-long runs for tests: the same code at toy widths.
    Tiny,
}

impl Recipe {
    /// The recipe with the generator and discriminator conditioned on, and the audio encoder giving, features
    /// of `feature_dim` values: those of a given frozen image encoder.
    pub fn conditioned_on(mut self, feature_dim: usize) -> Self {
        self.generator.feature_dim = feature_dim;
        self.discriminator.feature_dim = feature_dim;
        self.audio_encoder.embedding_dim = feature_dim;
        self
    }

    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Default => {
                let feature_dim = 512;
                Self {
                    resolution: 64,
                    image_encoder: ImageEncoderConfig::ResNet(ResNetImageEncoderConfig {
                        in_channels: 3,
                        stem_width: 32,
                        stage_widths: vec![32, 64, 96, 128],
                        stage_outputs: vec![64, 128, 256, 512],
                        blocks_per_stage: vec![1, 1, 1, 1],
                        input_size: 64,
                    }),
                    generator: GeneratorConfig {
                        feature_dim,
                        unused_class_embedding: None,
                        ..GeneratorConfig::biggan(8, 64, 100, 128, &[])
                    },
                    discriminator: DiscriminatorConfig::biggan(8, 64, feature_dim),
                    audio_encoder: AudioEncoderConfig {
                        in_channels: 1,
                        stem_width: 16,
                        stage_widths: vec![16, 32, 64, 128],
                        blocks_per_stage: vec![2, 2, 2, 2],
                        embedding_dim: feature_dim,
                        fc2: false,
                    },
                    image_steps: 300,
                    image_batch: 48,
                    image_views: ViewPolicy::Mild,
                    image_objective: ImageObjective::SupervisedContrastive,
                    image_label_pairs: 0.5,
                    gan_steps: 1300,
                    gan_batch: 16,
                    neighbours: 5,
                    // Pure IC-GAN: a weight of 10 did not help (docs/experiments.md).
                    gan_reconstruction: 0.0,
                    // BigGAN uses 0.9999 over 10^5 steps; a schedule of thousands needs a shorter memory.
                    gan_ema_decay: 0.995,
                    gan_ema_start: 200,
                    // IC-GAN's policy for its small data set (COCO-Stuff); it beat colour, translation and
                    // cutout in two paired runs (docs/experiments.md).
                    gan_augment: AugmentPolicy::Translation,
                    gan_generator_rate: GAN_RATE,
                    gan_discriminator_rate: GAN_RATE,
                    gan_discriminator_steps: 1,
                    image_projection: None,
                    audio_steps: 120,
                    audio_batch: 32,
                    checkpoint_every: 50,
                }
            }
            Preset::Tiny => {
                let feature_dim = 16;
                Self {
                    resolution: 64,
                    image_encoder: ImageEncoderConfig::ResNet(ResNetImageEncoderConfig {
                        in_channels: 3,
                        stem_width: 8,
                        stage_widths: vec![8, 8, 8, 8],
                        stage_outputs: vec![16, 16, 16, feature_dim],
                        blocks_per_stage: vec![1, 1, 1, 1],
                        input_size: 64,
                    }),
                    generator: GeneratorConfig {
                        feature_dim,
                        unused_class_embedding: None,
                        ..GeneratorConfig::biggan(1, 64, 20, 8, &[])
                    },
                    discriminator: DiscriminatorConfig::biggan(1, 64, feature_dim),
                    audio_encoder: AudioEncoderConfig {
                        in_channels: 1,
                        stem_width: 8,
                        stage_widths: vec![8, 8, 8, 8],
                        blocks_per_stage: vec![1, 1, 1, 1],
                        embedding_dim: feature_dim,
                        fc2: false,
                    },
                    image_steps: 40,
                    image_batch: 8,
                    // SimCLR's own colour changes, so that the training test runs them.
                    image_views: ViewPolicy::Simclr,
                    image_objective: ImageObjective::SupervisedContrastive,
                    image_label_pairs: 0.5,
                    gan_steps: 16,
                    gan_batch: 4,
                    neighbours: 2,
                    // On here so that the training test covers the term's code path, and strong enough that
                    // its fall over 16 steps shows through the adversarial term's swings.
                    gan_reconstruction: 10.0,
                    gan_ema_decay: 0.5,
                    gan_ema_start: 4,
                    // Every transform, so that the training test runs them all.
                    gan_augment: AugmentPolicy::ColorTranslationCutout,
                    // Five times the preset's: with BigGAN's orthogonal initialisation, 16 steps at 2e-4
                    // move the weights too little for the training test to see a loss fall.
                    gan_generator_rate: 5.0 * GAN_RATE,
                    gan_discriminator_rate: 5.0 * GAN_RATE,
                    gan_discriminator_steps: 1,
                    image_projection: None,
                    audio_steps: 40,
                    audio_batch: 6,
                    checkpoint_every: 8,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    pub recipe: Recipe,
    pub seed: u64,
    /// Stop (with a checkpoint) once this many steps of the current stage have run in this call: for tests of
    /// resuming, and for training in slices.
    pub max_steps_per_call: Option<usize>,
    /// Stop (with a checkpoint) after the first step that ends past this moment: for training on a machine
    /// lent for a while. The schedule does not depend on the step count, so a later call can end the stage
    /// where this one stopped (`--steps`) or go on.
    pub deadline: Option<Instant>,
    /// Training time of each stage (image encoder, generator, audio encoder) in seconds, summed over resumed
    /// calls: a stage that has used its time ends at the step it reached, as if that were its step count. For
    /// a fixed time on a machine whose speed is not known beforehand.
    pub stage_seconds: Option<[f64; 3]>,
    /// Train only this stage (and the image encoder it depends on); the generator and the audio encoder are
    /// independent, so two processes can train them at once.
    pub only: Option<Stage>,
    /// A trained image encoder (a file `s2v` can load) to use, frozen, instead of training stage (a): the
    /// paper's `f_V` is a frozen pretrained network too. It reads the pictures at its own input size, and the
    /// generator, the discriminator and the audio encoder take its features' width instead of the recipe's.
    pub image_encoder: Option<PathBuf>,
    /// When the generator stage resumes, start its discriminator (and that optimiser) anew instead of loading
    /// them: to change the discriminator's width during a run, or to replace one that stopped teaching.
    pub fresh_discriminator: bool,
    /// Train Sound2Vision's audio encoder (with `fc2`) against these embeddings of the data set's pictures
    /// (an `N x D` `.npy`, one row per picture in [`Dataset::listed_pictures`]'s order, such as a CLIP image
    /// encoder's), with the paper's loss on the unnormalised features, instead of the three stages.
    pub target_embeddings: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Stage {
    ImageEncoder,
    Generator,
    AudioEncoder,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::ImageEncoder => "image-encoder",
            Stage::Generator => "generator",
            Stage::AudioEncoder => "audio-encoder",
        }
    }
}

/// What a stage has done so far; `progress.json` in its checkpoint folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageProgress {
    pub step: usize,
    /// Mean loss over each checkpoint interval, per loss name.
    pub losses: Vec<(usize, Vec<(String, f64)>)>,
    pub seconds: f64,
}

impl StageProgress {
    /// Whether any stage of the run in `out` has saved its progress: whether a stopped run has a checkpoint
    /// to go on from.
    pub fn any_saved(out: &Path) -> bool {
        [Stage::ImageEncoder, Stage::Generator, Stage::AudioEncoder]
            .into_iter()
            .any(|stage| matches!(Self::read(out, stage), Ok(Some(_))))
    }

    pub fn read(out: &Path, stage: Stage) -> Result<Option<Self>> {
        let path = stage_dir(out, stage).join("progress.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is corrupt", path.display())
        })?))
    }

    fn write(&self, out: &Path, stage: Stage) -> Result<()> {
        let dir = stage_dir(out, stage);
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_string_pretty(self)?;
        write_whole(&dir.join("progress.json"), |partial| {
            std::fs::write(partial, json)
        })?;
        Ok(())
    }
}

fn stage_dir(out: &Path, stage: Stage) -> PathBuf {
    out.join("checkpoints").join(stage.name())
}

pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// The random source of one step: independent of where a run was resumed.
fn step_rng(seed: u64, stage: Stage, step: usize) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((stage as u64) << 56) ^ step as u64,
    )
}

/// Seeds the backend's generator for one stage's initialisation, so that a stage starts the same whether the
/// stages before it ran in this call or were loaded from their checkpoints.
fn seed_stage<B: Backend>(device: &B::Device, seed: u64, stage: Stage) {
    B::seed(device, seed.wrapping_mul(31).wrapping_add(stage as u64));
}

/// Runs the stages that have not finished. Returns whether all the chosen ones have.
pub fn train<B: AutodiffBackend>(options: &TrainOptions, device: &B::Device) -> Result<bool> {
    let dataset = Dataset::open(&options.data)?;
    if let Some(path) = &options.target_embeddings {
        return audio_stage::train_to_embeddings::<B>(options, &dataset, path, device);
    }
    // A given encoder is read before thousands of pictures are.
    let frozen: Option<ImageEncoder<B::InnerBackend>> = options
        .image_encoder
        .as_deref()
        .map(|path| s2v_serving::networks::load_network(Some(path), device))
        .transpose()?;
    let frozen = match (frozen, options.recipe.image_projection) {
        (Some(encoder), Some(width)) => Some(image_projection::attach::<B>(
            encoder, width, &dataset, options, device,
        )?),
        (frozen, _) => frozen,
    };
    let options = &match &frozen {
        Some(encoder) => TrainOptions {
            recipe: options.recipe.clone().conditioned_on(encoder.feature_dim()),
            ..options.clone()
        },
        None => options.clone(),
    };
    std::fs::create_dir_all(&options.out)?;
    std::fs::write(
        options.out.join("recipe.json"),
        serde_json::to_string_pretty(&options.recipe)?,
    )?;
    let training_pictures = dataset.training_images();
    let pictures = data::PictureBank::load(
        training_pictures.iter().map(|(p, _)| p.as_path()),
        options.recipe.resolution,
    )?;
    eprintln!(
        "{} training pictures, {} training pairs, {} training sounds without a picture",
        pictures.len(),
        dataset.pairs_in(Split::Train).count(),
        dataset
            .audio_only
            .iter()
            .filter(|i| i.split == Split::Train)
            .count()
    );
    let items: Vec<&Item> = training_pictures.iter().map(|(_, item)| *item).collect();
    let classes = match options.recipe.image_objective {
        ImageObjective::Simclr => (0..items.len()).collect(),
        ImageObjective::SupervisedContrastive => pairing::picture_classes(&items),
    };
    let image_encoder = match frozen {
        Some(encoder) => encoder,
        None => match image_stage::run::<B>(options, &pictures, &classes, device)? {
            Some(encoder) => encoder,
            None => return Ok(false),
        },
    };
    save_native(&image_encoder, &options.out.join(IMAGE_ENCODER_FILE), false)?;
    let mut features =
        FrozenFeatures::cached(&image_encoder, &options.data.join(CACHE_DIR), device);
    report_image_neighbours(&dataset, &mut features, options)?;
    let wanted = |stage: Stage| options.only.is_none_or(|only| only == stage);
    if wanted(Stage::Generator) {
        let files: Vec<PathBuf> = training_pictures.iter().map(|(p, _)| p.clone()).collect();
        let Some(generator) =
            gan_stage::run::<B>(options, &pictures, &files, &mut features, device)?
        else {
            return Ok(false);
        };
        save_native(&generator, &options.out.join(GENERATOR_FILE), false)?;
    }
    if wanted(Stage::AudioEncoder) {
        let files: Vec<PathBuf> = training_pictures.iter().map(|(p, _)| p.clone()).collect();
        let targets = AudioTargets {
            pictures: &training_pictures,
            rows: features.of(&files, false)?,
            encoder: options.recipe.audio_encoder.clone(),
            loss: AudioLoss::Sound2Scene,
        };
        let Some(audio_encoder) = audio_stage::run::<B>(options, &dataset, &targets, device)?
        else {
            return Ok(false);
        };
        save_native(&audio_encoder, &options.out.join(AUDIO_ENCODER_FILE), false)?;
    }
    Ok(true)
}

/// The file the image encoder's neighbour measure is written to, beside it.
pub const IMAGE_NEIGHBOURS_FILE: &str = "image_encoder_neighbours.json";

/// Measures the image encoder's neighbours on the data set's pictures and writes them beside it. A data set
/// without held-out pictures has nothing to measure: that is said, not an error.
fn report_image_neighbours<B: Backend>(
    dataset: &Dataset,
    features: &mut FrozenFeatures<B>,
    options: &TrainOptions,
) -> Result<()> {
    let labelling = Labelling::of(dataset);
    let pixel_size = options.recipe.resolution;
    match image_encoder_neighbours(dataset, labelling, features, pixel_size) {
        Ok(measure) => {
            eprintln!(
                "image encoder, by {}: held-out pictures' nearest training picture of their class {:.3} \
                 (raw pixels {:.3}); training pictures' {:.3} (raw pixels {:.3})",
                labelling.name(),
                measure.held_out_pictures,
                measure.held_out_pictures_by_pixels,
                measure.training_pictures,
                measure.training_pictures_by_pixels
            );
            std::fs::write(
                options.out.join(IMAGE_NEIGHBOURS_FILE),
                serde_json::to_string_pretty(&measure)?,
            )?;
        }
        Err(e) => eprintln!("image encoder: no neighbour measure ({e:#})"),
    }
    Ok(())
}

/// The shared loop of a stage: resume, step, checkpoint, progress bar.
struct StageLoop<'a> {
    stage: Stage,
    options: &'a TrainOptions,
    total: usize,
    progress: StageProgress,
    bar: ProgressBar,
    started: Instant,
    seconds_before: f64,
    interval: Vec<(String, f64)>,
    interval_steps: usize,
    steps_this_call: usize,
    /// `--stage-seconds` for this stage.
    budget: Option<f64>,
    /// The stage has used its budget; decided only when a step ends, so that a checkpoint marks the end.
    out_of_time: bool,
}

impl<'a> StageLoop<'a> {
    fn new(stage: Stage, options: &'a TrainOptions, total: usize) -> Result<Self> {
        let progress = StageProgress::read(&options.out, stage)?.unwrap_or_default();
        let bar = ProgressBar::new(total as u64).with_position(progress.step.min(total) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>13} {bar:30} {pos}/{len} [{elapsed_precise}, {eta_precise} left] {msg}",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(stage.name());
        bar.reset_eta();
        let budget = options.stage_seconds.map(|seconds| seconds[stage as usize]);
        let out_of_time = progress.step > 0 && budget.is_some_and(|b| progress.seconds >= b);
        Ok(Self {
            budget,
            out_of_time,
            stage,
            options,
            total,
            seconds_before: progress.seconds,
            progress,
            bar,
            started: Instant::now(),
            interval: Vec::new(),
            interval_steps: 0,
            steps_this_call: 0,
        })
    }

    fn dir(&self) -> PathBuf {
        stage_dir(&self.options.out, self.stage)
    }

    fn resuming(&self) -> bool {
        self.progress.step > 0
    }

    fn finished(&self) -> bool {
        self.progress.step >= self.total || self.out_of_time
    }

    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    /// Whether this call has run its share: `--max-steps` steps, or past `--time-limit`.
    fn slice_done(&self) -> bool {
        self.options
            .max_steps_per_call
            .is_some_and(|m| self.steps_this_call >= m)
            || self.options.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The next step to run and its random source, or `None` when the stage or this call's slice is done.
    fn next_step(&mut self) -> Option<(usize, StdRng)> {
        if self.finished() || self.slice_done() {
            return None;
        }
        let step = self.progress.step;
        Some((step, step_rng(self.options.seed, self.stage, step)))
    }

    /// Records a finished step's losses; returns whether to checkpoint now.
    fn record(&mut self, losses: &[(&str, f64)]) -> bool {
        self.progress.step += 1;
        self.steps_this_call += 1;
        self.out_of_time |= self.budget.is_some_and(|b| self.seconds() >= b);
        self.interval_steps += 1;
        for (name, value) in losses {
            match self.interval.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum += value,
                None => self.interval.push((name.to_string(), *value)),
            }
        }
        let message: Vec<String> = losses.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
        self.bar.set_message(message.join(", "));
        self.bar.set_position(self.progress.step as u64);
        self.progress
            .step
            .is_multiple_of(self.options.recipe.checkpoint_every.max(1))
            || self.finished()
            || self.slice_done()
    }

    /// Writes the interval's mean losses and the step count (after the caller saved weights and optimiser).
    fn commit(&mut self) -> Result<()> {
        if self.interval_steps > 0 {
            let means = self
                .interval
                .drain(..)
                .map(|(n, s)| (n, s / self.interval_steps as f64))
                .collect();
            self.progress.losses.push((self.progress.step, means));
            self.interval_steps = 0;
        }
        self.progress.seconds = self.seconds();
        // Without a terminal (a log file, a remote job) the bar draws nothing: a line per checkpoint keeps a
        // record of the run.
        if self.bar.is_hidden() {
            let per_step = (self.steps_this_call > 0)
                .then(|| self.started.elapsed().as_secs_f64() / self.steps_this_call as f64);
            let losses = self.progress.losses.last().map_or(&[][..], |(_, l)| l);
            eprintln!(
                "{}",
                progress_line(
                    self.stage,
                    "checkpoint at step",
                    self.progress.step,
                    self.total,
                    losses,
                    self.progress.seconds,
                    per_step
                )
            );
        }
        self.progress.write(&self.options.out, self.stage)
    }

    fn finish(self) {
        self.bar.finish();
        if let Some((step, losses)) = self.progress.losses.last() {
            eprintln!(
                "{}",
                progress_line(
                    self.stage,
                    "step",
                    *step,
                    self.total,
                    losses,
                    self.progress.seconds,
                    None
                )
            );
        }
    }
}

/// A stage's progress as a line of text: `what` and the step, the last interval's mean losses, time.
fn progress_line(
    stage: Stage,
    what: &str,
    step: usize,
    total: usize,
    losses: &[(String, f64)],
    seconds: f64,
    seconds_per_step: Option<f64>,
) -> String {
    let losses: Vec<String> = losses
        .iter()
        .map(|(n, v)| format!(", {n} {v:.4}"))
        .collect();
    let rate = seconds_per_step.map_or(String::new(), |s| format!(", {s:.2} s per step"));
    format!(
        "{}: {what} {step}/{total}{} ({seconds:.0} s in all{rate})",
        stage.name(),
        losses.concat()
    )
}

/// Saves a module's weights (with their parameter ids, which the optimiser state refers to).
fn save_module<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<()> {
    module
        .clone()
        .save_file(path, &Recorder::new())
        .with_context(|| format!("saving {}", path.display()))
}

/// Loads a checkpoint into `module`, which must have the recipe's architecture: burn's loading replaces each
/// tensor whatever its shape, so a checkpoint of another width is refused here, naming the tensor.
fn load_module<B: Backend, M: Module<B>>(module: M, path: &Path, device: &B::Device) -> Result<M> {
    let wanted = parameter_shapes(&module);
    let loaded = module
        .load_file(path, &Recorder::new(), device)
        .with_context(|| format!("loading {}", path.display()))?;
    let got = parameter_shapes(&loaded);
    anyhow::ensure!(
        got.len() == wanted.len(),
        "{} does not fit the recipe: it has {} tensors, the recipe's network {}",
        path.display(),
        got.len(),
        wanted.len()
    );
    for ((name, want), (_, got)) in wanted.iter().zip(got) {
        anyhow::ensure!(
            *want == got,
            "{} does not fit the recipe: its {name} is {got:?}, the recipe's {want:?}",
            path.display()
        );
    }
    Ok(loaded)
}

/// Each float parameter's place in `module` (dotted path) and its shape, in visiting order.
fn parameter_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    use burn::module::{ModuleVisitor, Param};
    struct Shapes {
        path: Vec<String>,
        found: Vec<(String, Vec<usize>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.found
                .push((self.path.join("."), param.lazy_shape().to_vec()));
        }
    }
    let mut shapes = Shapes {
        path: Vec::new(),
        found: Vec::new(),
    };
    module.visit(&mut shapes);
    shapes.found
}

fn save_optimiser<B: AutodiffBackend, M: AutodiffModule<B>, O: burn::optim::Optimizer<M, B>>(
    optimiser: &O,
    path: &Path,
) -> Result<()> {
    use burn::record::Recorder as _;
    Recorder::new()
        .record(optimiser.to_record(), path.to_path_buf())
        .with_context(|| format!("saving {}", path.display()))
}

fn load_optimiser<B: AutodiffBackend, M: AutodiffModule<B>, O: burn::optim::Optimizer<M, B>>(
    optimiser: O,
    path: &Path,
    device: &B::Device,
) -> Result<O> {
    use burn::record::Recorder as _;
    let record = Recorder::new()
        .load(path.to_path_buf(), device)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(optimiser.load_record(record))
}

/// The rows `indices` of `table` (feature vectors of one width) as a `[indices.len(), width]` tensor.
fn selected_rows<B: Backend>(
    table: &[Vec<f32>],
    indices: &[usize],
    device: &B::Device,
) -> Tensor<B, 2> {
    let width = table.first().map_or(0, Vec::len);
    let data: Vec<f32> = indices
        .iter()
        .flat_map(|&i| table[i].iter().copied())
        .collect();
    Tensor::from_data(TensorData::new(data, [indices.len(), width]), device)
}

pub(crate) fn images_tensor<B: Backend>(
    rows: Vec<Vec<f32>>,
    size: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let n = rows.len();
    let data: Vec<f32> = rows.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(data, [n, 3, size, size]), device)
}

fn scalar<B: Backend>(loss: &Tensor<B, 1>) -> f64 {
    f64::from(loss.clone().into_scalar().elem::<f32>())
}

/// `s2v train` on whichever backend `--device` picks, with autodiff on top.
pub struct TrainJob(pub TrainOptions);

impl s2v_serving::device::OnBackend for TrainJob {
    type Output = bool;

    fn run<B: Backend>(self, device: B::Device) -> Result<bool> {
        train::<burn::backend::Autodiff<B>>(&self.0, &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_width_is_refused_naming_the_tensor() {
        use s2v_models::discriminator::{Discriminator, DiscriminatorConfig};
        type B = burn::backend::Flex;
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discriminator");
        let narrow = DiscriminatorConfig::biggan(1, 64, 8);
        save_module(&Discriminator::<B>::init(&narrow, &device), &path).unwrap();
        let file = path.with_extension("mpk");
        let same = load_module(Discriminator::<B>::init(&narrow, &device), &file, &device);
        assert!(same.is_ok(), "{:#}", same.unwrap_err());
        let wider = DiscriminatorConfig::biggan(2, 64, 8);
        let error = load_module(Discriminator::<B>::init(&wider, &device), &file, &device)
            .expect_err("a narrower checkpoint is refused");
        let message = format!("{error:#}");
        assert!(
            message.contains("blocks.0.conv1") && message.contains("[1, 3, 3, 3]"),
            "{message}"
        );
    }

    #[test]
    fn a_checkpoint_line_names_the_stage_step_losses_and_time() {
        let losses = [
            ("d-hinge".to_string(), 1.23456),
            ("g-hinge".to_string(), 0.5),
        ];
        assert_eq!(
            progress_line(
                Stage::Generator,
                "checkpoint at step",
                150,
                1300,
                &losses,
                270.4,
                Some(1.8)
            ),
            "generator: checkpoint at step 150/1300, d-hinge 1.2346, g-hinge 0.5000 (270 s in all, 1.80 s per step)"
        );
        assert_eq!(
            progress_line(
                Stage::AudioEncoder,
                "checkpoint at step",
                3,
                3,
                &[],
                12.0,
                None
            ),
            "audio-encoder: checkpoint at step 3/3 (12 s in all)"
        );
    }
}
