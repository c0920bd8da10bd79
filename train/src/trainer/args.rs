//! `s2v train`'s flags, each declared once: a preset and what overrides it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use s2v_models::discriminator::DiscriminatorConfig;

use super::{AugmentPolicy, ImageObjective, Preset, Recipe, Stage, TrainOptions, ViewPolicy};

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// A data set folder (`s2v data build-default` writes one).
    #[arg(long)]
    pub data: PathBuf,
    /// Checkpoints, then the trained networks (safetensors), go here.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many steps of the current stage (a checkpoint is written; run again to go on).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Stop with a checkpoint after the first step that ends this many seconds after the command started
    /// (run again to go on).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub time_limit: Option<f64>,
    /// Give each stage at most this many seconds (summed over resumed calls, each call's setup of the stage
    /// included); a stage that has used them ends at the step it reached. `--steps` stays the upper bound.
    #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"], value_parser = parse_seconds)]
    pub stage_seconds: Option<Vec<f64>>,
    /// Train only this stage (after the image encoder, which both others need).
    #[arg(long, value_enum)]
    pub only: Option<Stage>,
    /// Override the preset's step counts: image encoder, generator, audio encoder.
    #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"])]
    pub steps: Option<Vec<usize>>,
    /// Override the preset's batch sizes: image encoder, generator, audio encoder.
    #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"], value_parser = parse_batch)]
    pub batches: Option<Vec<usize>>,
    /// Override the weight of the generator's L1 term towards the instance's own picture (0: pure IC-GAN).
    #[arg(long, value_parser = parse_weight)]
    pub gan_reconstruction: Option<f32>,
    /// Override Adam's learning rates of the generator and its discriminator.
    #[arg(long, num_args = 2, value_names = ["G", "D"], value_parser = parse_rate)]
    pub gan_rates: Option<Vec<f64>>,
    /// Override which DiffAugment transforms the discriminator's images get.
    #[arg(long, value_enum)]
    pub gan_augment: Option<AugmentPolicy>,
    /// Override the colour changes of the image encoder's SimCLR views.
    #[arg(long, value_enum)]
    pub image_views: Option<ViewPolicy>,
    /// Override what the image encoder learns from: the fine labels (the preset) or SimCLR's views alone.
    #[arg(long, value_enum)]
    pub image_objective: Option<ImageObjective>,
    /// Override the share of the image stage's batch drawn as pairs of pictures of one fine label.
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    pub image_label_pairs: Option<f64>,
    /// Discriminator updates per generator update, each on a new batch (BigGAN's `num_D_steps`; the preset
    /// has 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub discriminator_steps: Option<u16>,
    /// Override the discriminator's width: BigGAN's channel multiplier `D_ch` (the preset has 8).
    #[arg(long, value_name = "CH", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub discriminator_ch: Option<u16>,
    /// On resuming the generator stage, start a new discriminator instead of loading the checkpoint's
    /// (needed after changing --discriminator-ch).
    #[arg(long)]
    pub fresh_discriminator: bool,
    /// Use this trained or pretrained image encoder, frozen, instead of training one (stage a); it reads the
    /// pictures at its own input size, and the other networks take its feature width.
    #[arg(long, value_name = "FILE")]
    pub image_encoder: Option<PathBuf>,
    /// With --image-encoder: train a linear projection of its features to WIDTH values by supervised
    /// contrastive learning on the labelled training pictures, and condition everything on the projection.
    #[arg(long, value_name = "WIDTH", requires = "image_encoder", value_parser = clap::value_parser!(u16).range(1..))]
    pub image_projection: Option<u16>,
    /// Train Sound2Vision's audio encoder (with `fc2`, the paper's loss on unnormalised features) against
    /// these embeddings of the data set's pictures instead of the three stages: an N x D `.npy`, one row per
    /// picture in the order `s2v data pictures` lists them (a CLIP image encoder's, say).
    #[arg(long, value_name = "E.npy", conflicts_with_all = ["image_encoder", "only"])]
    pub target_embeddings: Option<PathBuf>,
}

impl TrainArgs {
    /// The run these flags ask for, its time limit counted from now.
    pub fn into_options(self) -> Result<TrainOptions> {
        anyhow::ensure!(
            !(self.image_encoder.is_some() && self.only == Some(Stage::ImageEncoder)),
            "--image-encoder replaces the image encoder's training, so --only image-encoder has nothing to do"
        );
        let recipe = self.recipe();
        Ok(TrainOptions {
            deadline: self
                .time_limit
                .map(|seconds| Instant::now() + Duration::from_secs_f64(seconds)),
            stage_seconds: self.stage_seconds.map(|s| [s[0], s[1], s[2]]),
            data: self.data,
            out: self.out,
            recipe,
            seed: self.seed,
            max_steps_per_call: self.max_steps,
            only: self.only,
            image_encoder: self.image_encoder,
            fresh_discriminator: self.fresh_discriminator,
            target_embeddings: self.target_embeddings,
        })
    }

    /// The preset with the overrides applied.
    fn recipe(&self) -> Recipe {
        let mut recipe = Recipe::preset(self.preset);
        if let Some(steps) = &self.steps {
            [recipe.image_steps, recipe.gan_steps, recipe.audio_steps] =
                [steps[0], steps[1], steps[2]];
        }
        if let Some(batches) = &self.batches {
            [recipe.image_batch, recipe.gan_batch, recipe.audio_batch] =
                [batches[0], batches[1], batches[2]];
        }
        if let Some(rates) = &self.gan_rates {
            [recipe.gan_generator_rate, recipe.gan_discriminator_rate] = [rates[0], rates[1]];
        }
        recipe.gan_reconstruction = self.gan_reconstruction.unwrap_or(recipe.gan_reconstruction);
        recipe.gan_augment = self.gan_augment.unwrap_or(recipe.gan_augment);
        recipe.image_views = self.image_views.unwrap_or(recipe.image_views);
        recipe.image_objective = self.image_objective.unwrap_or(recipe.image_objective);
        recipe.image_label_pairs = self.image_label_pairs.unwrap_or(recipe.image_label_pairs);
        recipe.image_projection = self.image_projection.map(usize::from);
        if let Some(steps) = self.discriminator_steps {
            recipe.gan_discriminator_steps = steps.into();
        }
        if let Some(ch) = self.discriminator_ch {
            recipe.discriminator = DiscriminatorConfig::biggan(
                ch.into(),
                recipe.resolution,
                recipe.generator.feature_dim,
            );
        }
        recipe
    }
}

/// Seconds for `--time-limit` and `--stage-seconds`: at least 0 and at most ten years, so that adding them to
/// the clock cannot overflow.
fn parse_seconds(text: &str) -> Result<f64, String> {
    const TEN_YEARS: f64 = 10.0 * 365.25 * 24.0 * 3600.0;
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=TEN_YEARS).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "expected seconds from 0 to {TEN_YEARS}, got {text:?}"
        )),
    }
}

/// A loss weight for `--gan-reconstruction`: a finite number of at least 0.
fn parse_weight(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(weight) if weight.is_finite() && weight >= 0.0 => Ok(weight),
        _ => Err(format!("expected a number of at least 0, got {text:?}")),
    }
}

/// A learning rate for `--gan-rates`: a finite number above 0.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("expected a learning rate above 0, got {text:?}")),
    }
}

/// A share of a batch, from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("expected a share from 0 to 1, got {text:?}")),
    }
}

/// A batch size for `--batches`: at least 2, as the losses contrast the samples of a batch.
fn parse_batch(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(batch) if batch >= 2 => Ok(batch),
        _ => Err(format!(
            "expected a batch of at least 2 (the losses contrast its samples), got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(extra: &[&str]) -> Result<TrainArgs, clap::Error> {
        let base = ["train", "--data", "d", "--out", "o"];
        Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.args)
    }

    #[test]
    fn overrides_replace_the_presets_values_and_nothing_else() {
        let preset = Recipe::preset(Preset::Default);
        let recipe = parse(&["--steps", "1", "2", "3", "--gan-rates", "1e-3", "2e-3"])
            .unwrap()
            .recipe();
        assert_eq!(
            (recipe.image_steps, recipe.gan_steps, recipe.audio_steps),
            (1, 2, 3)
        );
        assert_eq!(
            (recipe.gan_generator_rate, recipe.gan_discriminator_rate),
            (1e-3, 2e-3)
        );
        assert_eq!(recipe.gan_batch, preset.gan_batch);
        assert_eq!(recipe.gan_augment, preset.gan_augment);
        let wider = parse(&["--discriminator-ch", "16"]).unwrap().recipe();
        assert_eq!(wider.discriminator.block_out[0], 16);
    }

    #[test]
    fn out_of_range_values_and_contradictions_are_refused() {
        for bad in [
            &["--batches", "1", "8", "8"][..],
            &["--gan-rates", "0", "1e-3"],
            &["--gan-reconstruction", "-1"],
            &["--time-limit", "-5"],
            &["--discriminator-steps", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let both = parse(&["--image-encoder", "f", "--only", "image-encoder"]).unwrap();
        assert!(both.into_options().is_err());
    }
}
