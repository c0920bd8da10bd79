//! `s2v`: the Sound2Vision command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use std::time::Duration;

use s2v_models::discriminator::DiscriminatorConfig;
use s2v_worker::arrays::Array;
use s2v_worker::broker::{WorkerOptions, serve_jobs};
use s2v_worker::commands::{
    self, Convert, DEFAULT_BATCH, EncodeAudio, EncodeImage, Generate, ImageInput, ModelInfo,
    NetworkKind, NoiseSource,
};
use s2v_worker::dataset::build::{BuildOptions, build_default};
use s2v_worker::device::{DeviceKind, dispatch};
use s2v_worker::eval::{EvalJob, EvalOptions};
use s2v_worker::runtime::{RuntimeConfig, StartRuntime};
use s2v_worker::train::{AugmentPolicy, Preset, Recipe, Stage, TrainJob, TrainOptions, ViewPolicy};

#[derive(Parser)]
#[command(
    name = "s2v",
    version,
    about = "Sound2Vision: images of the scene a sound describes"
)]
struct Cli {
    /// Compute device.
    #[arg(long, global = true, value_enum, default_value = "flex")]
    device: DeviceKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The normalised log-spectrogram (257 x 1004) of an audio file.
    Spectrogram {
        audio: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Audio embeddings (one row per file, the encoder's raw output) of audio files.
    EncodeAudio {
        /// Weights (PyTorch or s2v format); the embedded default model when left out.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(required = true)]
        audio: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: usize,
    },
    /// Image features (one row per image) from image files or an already normalised N x 3 x 224 x 224 array.
    EncodeImage {
        /// Weights (PyTorch or s2v format); the embedded default model when left out.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Already ImageNet-normalised N x 3 x 224 x 224 float32 array.
        #[arg(long, conflicts_with = "images")]
        input: Option<PathBuf>,
        images: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: usize,
    },
    /// Images from features: OUT.npy gets the raw N x 3 x H x W tanh output, a folder gets PNG files.
    Generate(GenerateArgs),
    /// Trains the three networks on a data set (resumes from the checkpoints in --out).
    Train {
        /// A data set folder (`s2v data build-default` writes one).
        #[arg(long)]
        data: PathBuf,
        /// Checkpoints, then the trained networks (safetensors), go here.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "default")]
        preset: Preset,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop after this many steps of the current stage (a checkpoint is written; run again to go on).
        #[arg(long)]
        max_steps: Option<usize>,
        /// Stop with a checkpoint after the first step that ends this many seconds after the command started
        /// (run again to go on).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        time_limit: Option<f64>,
        /// Give each stage at most this many seconds (summed over resumed calls, each call's setup of the
        /// stage included); a stage that has used them ends at the step it reached. `--steps` stays the
        /// upper bound.
        #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"], value_parser = parse_seconds)]
        stage_seconds: Option<Vec<f64>>,
        /// Train only this stage (after the image encoder, which both others need).
        #[arg(long, value_enum)]
        only: Option<Stage>,
        /// Override the preset's step counts: image encoder, generator, audio encoder.
        #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"])]
        steps: Option<Vec<usize>>,
        /// Override the preset's batch sizes: image encoder, generator, audio encoder.
        #[arg(long, num_args = 3, value_names = ["IMAGE", "GAN", "AUDIO"], value_parser = parse_batch)]
        batches: Option<Vec<usize>>,
        /// Override the weight of the generator's L1 term towards the instance's own picture (0: pure IC-GAN).
        #[arg(long, value_parser = parse_weight)]
        gan_reconstruction: Option<f32>,
        /// Override Adam's learning rates of the generator and its discriminator.
        #[arg(long, num_args = 2, value_names = ["G", "D"], value_parser = parse_rate)]
        gan_rates: Option<Vec<f64>>,
        /// Override which DiffAugment transforms the discriminator's images get.
        #[arg(long, value_enum)]
        gan_augment: Option<AugmentPolicy>,
        /// Override the colour changes of the image encoder's SimCLR views.
        #[arg(long, value_enum)]
        image_views: Option<ViewPolicy>,
        /// Discriminator updates per generator update, each on a new batch (BigGAN's `num_D_steps`; the
        /// preset has 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
        discriminator_steps: Option<u16>,
        /// Override the discriminator's width: BigGAN's channel multiplier `D_ch` (the preset has 8).
        #[arg(long, value_name = "CH", value_parser = clap::value_parser!(u16).range(1..=256))]
        discriminator_ch: Option<u16>,
        /// On resuming the generator stage, start a new discriminator instead of loading the checkpoint's
        /// (needed after changing --discriminator-ch).
        #[arg(long)]
        fresh_discriminator: bool,
        /// Use this trained image encoder, frozen, instead of training one (stage a); it must match the
        /// preset's resolution and feature width.
        #[arg(long, value_name = "FILE")]
        image_encoder: Option<PathBuf>,
    },
    /// Judges a model on a data set's held-out pairs; writes report.json and pictures to --out.
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// A folder with the three networks (`s2v train --out`); the embedded default model when left out.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Images generated per held-out sound. With 32 the noise of the generated pictures themselves is
        /// small beside that of the held-out sounds (with 4, a generator's R@1 was up to 0.08 off its value
        /// with 32).
        #[arg(long, default_value_t = 32)]
        samples: usize,
        /// Training steps of the judging classifier (reused from --out when it is already there).
        #[arg(long, default_value_t = 400)]
        classifier_steps: usize,
        /// Truncation trick for every generated picture: redraw noise values outside [-T, T].
        #[arg(long)]
        truncation: Option<f32>,
    },
    /// Training data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Runs a generator worker that takes jobs from a NATS JetStream queue (`s2v-server --nats`).
    Worker(WorkerArgs),
    /// Converts a PyTorch checkpoint to the project's own format (safetensors with the configuration inside).
    Convert {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Which network the checkpoint holds (told from its tensor names when left out).
        #[arg(long, value_enum)]
        network: Option<NetworkKind>,
        /// Store weights in f16 (half the size; batch-norm statistics stay f32).
        #[arg(long)]
        f16: bool,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Downloads Tux Paint's stamps and Openclipart with apt-get and writes the default model's data set.
    BuildDefault {
        #[arg(long)]
        out: PathBuf,
        /// Also pair GCompris's instruments and farm animals with their sounds (`gcompris-qt-data`). The
        /// held-out split changes with the items: the shipped model was trained on a build without them.
        #[arg(long)]
        with_gcompris: bool,
        /// Also give the instrument pictures without a sound a phrase of their instrument, played from
        /// `fluid-soundfont-gm` (they move from the image-only set to the pairs; the held-out split changes).
        #[arg(long)]
        with_soundfont: bool,
        /// Use packages already unpacked here (a tree with usr/share/...) instead of downloading them.
        #[arg(long)]
        unpacked: Option<PathBuf>,
        /// Hold out one item group in this many per category.
        #[arg(long, default_value_t = 5, conflicts_with = "split_from")]
        test_every: usize,
        /// Keep the held-out split of an earlier build in this folder: the same sounds are held out, and new
        /// pairs of their groups are left out, so extra data (`--with-gcompris`, `--with-soundfont`) only adds
        /// training pairs and a model trained on the earlier build can be judged on this one.
        #[arg(long)]
        split_from: Option<PathBuf>,
    },
}

#[derive(Args)]
struct WorkerArgs {
    /// The NATS server (with JetStream enabled).
    #[arg(long)]
    nats: String,
    /// Generator weights (PyTorch or s2v format); the embedded default model when left out.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Its name in the workers' announcements; the host name and process id when left out.
    #[arg(long)]
    name: Option<String>,
    /// Jobs taken at once; their images are batched together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    jobs: u32,
    /// Images per forward pass at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    max_batch: u32,
    /// How long to wait for more images before running a batch that is not full, in milliseconds.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
    /// How long the broker waits without word from a worker before giving its job to another, in
    /// milliseconds (set by the first worker, which creates the queue's consumer).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(300..))]
    ack_wait_ms: u64,
}

#[derive(Args)]
struct GenerateArgs {
    /// Weights (PyTorch or s2v format); the embedded default model when left out.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// N x 2048 (or 2048) features; they are L2-normalised before use.
    #[arg(long)]
    features: PathBuf,
    /// N x dim_z noise, one row per image.
    #[arg(long, conflicts_with_all = ["seed", "count", "truncation"], required_unless_present = "seed")]
    noise: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Images per feature row (with --seed).
    #[arg(long, default_value_t = 1, requires = "seed")]
    count: usize,
    /// Truncation trick: redraw noise values outside [-T, T].
    #[arg(long, requires = "seed")]
    truncation: Option<f32>,
    /// OUT.npy, or a folder for PNG files.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch_size: usize,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Spectrogram { audio, out } => {
            commands::write_spectrogram(&commands::spectrogram_of_file(&audio)?, &out)?;
        }
        Command::EncodeAudio {
            checkpoint,
            audio,
            out,
            batch_size,
        } => {
            dispatch(
                cli.device,
                EncodeAudio {
                    checkpoint,
                    audio,
                    batch_size,
                },
            )?
            .write(&out)?;
        }
        Command::EncodeImage {
            checkpoint,
            input,
            images,
            out,
            batch_size,
        } => {
            let input = match input {
                Some(path) => ImageInput::Normalized(path),
                None if images.is_empty() => anyhow::bail!("give image files or --input X.npy"),
                None => ImageInput::Files(images),
            };
            dispatch(
                cli.device,
                EncodeImage {
                    checkpoint,
                    input,
                    batch_size,
                },
            )?
            .write(&out)?;
        }
        Command::Generate(args) => {
            let noise = match (args.noise, args.seed) {
                (Some(path), _) => NoiseSource::File(path),
                (None, Some(seed)) => NoiseSource::Seeded {
                    seed,
                    count: args.count,
                    truncation: args.truncation,
                },
                (None, None) => anyhow::bail!("give --noise Z.npy or --seed S"),
            };
            let job = Generate {
                checkpoint: args.checkpoint,
                features: args.features,
                noise,
                batch_size: args.batch_size,
            };
            let images: Array = dispatch(cli.device, job)?;
            if args.out.extension().is_some_and(|e| e == "npy") {
                images.write(&args.out)?;
            } else {
                let written = commands::write_pngs(&images, &args.out)?;
                eprintln!("wrote {} images to {}", written.len(), args.out.display());
            }
        }
        Command::Train {
            data,
            out,
            preset,
            seed,
            max_steps,
            time_limit,
            stage_seconds,
            only,
            steps,
            batches,
            gan_reconstruction,
            gan_rates,
            discriminator_steps,
            gan_augment,
            image_views,
            discriminator_ch,
            fresh_discriminator,
            image_encoder,
        } => {
            anyhow::ensure!(
                !(image_encoder.is_some() && only == Some(Stage::ImageEncoder)),
                "--image-encoder replaces the image encoder's training, so --only image-encoder has nothing to do"
            );
            let deadline = time_limit.map(|seconds| {
                std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds)
            });
            let mut recipe = Recipe::preset(preset);
            if let Some(steps) = steps {
                recipe.image_steps = steps[0];
                recipe.gan_steps = steps[1];
                recipe.audio_steps = steps[2];
            }
            let stage_seconds = stage_seconds.map(|s| [s[0], s[1], s[2]]);
            if let Some(batches) = batches {
                recipe.image_batch = batches[0];
                recipe.gan_batch = batches[1];
                recipe.audio_batch = batches[2];
            }
            if let Some(weight) = gan_reconstruction {
                recipe.gan_reconstruction = weight;
            }
            if let Some(rates) = gan_rates {
                recipe.gan_generator_rate = rates[0];
                recipe.gan_discriminator_rate = rates[1];
            }
            if let Some(policy) = gan_augment {
                recipe.gan_augment = policy;
            }
            if let Some(policy) = image_views {
                recipe.image_views = policy;
            }
            if let Some(steps) = discriminator_steps {
                recipe.gan_discriminator_steps = steps.into();
            }
            if let Some(ch) = discriminator_ch {
                recipe.discriminator = DiscriminatorConfig::biggan(
                    ch.into(),
                    recipe.resolution,
                    recipe.generator.feature_dim,
                );
            }
            let options = TrainOptions {
                data,
                out: out.clone(),
                recipe,
                seed,
                max_steps_per_call: max_steps,
                deadline,
                stage_seconds,
                only,
                image_encoder,
                fresh_discriminator,
            };
            if dispatch(cli.device, TrainJob(options))? {
                match only {
                    Some(stage) => eprintln!("{} is trained: {}", stage.name(), out.display()),
                    None => eprintln!("all three networks are trained: {}", out.display()),
                }
            } else {
                eprintln!(
                    "stopped with a checkpoint in {}; run again to go on",
                    out.display()
                );
            }
        }
        Command::Eval {
            data,
            model,
            out,
            seed,
            samples,
            classifier_steps,
            truncation,
        } => {
            let report = dispatch(
                cli.device,
                EvalJob(EvalOptions {
                    data,
                    model,
                    out: out.clone(),
                    seed,
                    samples,
                    classifier_steps,
                    truncation,
                }),
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("pictures and report.json are in {}", out.display());
        }
        Command::Data(DataCommand::BuildDefault {
            out,
            with_gcompris,
            with_soundfont,
            unpacked,
            test_every,
            split_from,
        }) => {
            let summary = build_default(&BuildOptions {
                out: out.clone(),
                unpacked,
                test_every,
                gcompris: with_gcompris,
                soundfont: with_soundfont,
                split_from,
            })?;
            for skipped in &summary.skipped {
                eprintln!("skipped {skipped}");
            }
            eprintln!(
                "wrote {} training pairs, {} held-out pairs and {} image-only pictures to {}",
                summary.pairs_train,
                summary.pairs_test,
                summary.image_only,
                out.display()
            );
        }
        Command::Worker(args) => {
            let config = RuntimeConfig {
                queue_capacity: args.jobs as usize,
                max_batch: args.max_batch as usize,
                batch_wait: Duration::from_millis(args.batch_wait_ms),
            };
            let model = ModelInfo::of_generator(args.checkpoint.as_deref())?;
            let runtime = dispatch(
                cli.device,
                StartRuntime {
                    checkpoint: args.checkpoint,
                    config,
                },
            )?;
            let options = WorkerOptions {
                url: args.nats,
                name: args.name.unwrap_or_else(default_worker_name),
                jobs: args.jobs as usize,
                ack_wait: Duration::from_millis(args.ack_wait_ms),
            };
            tokio::runtime::Runtime::new()?.block_on(serve_jobs(runtime, model, options))?;
        }
        Command::Convert {
            input,
            out,
            network,
            f16,
        } => {
            let kind = dispatch(
                cli.device,
                Convert {
                    input,
                    output: out.clone(),
                    network,
                    half: f16,
                },
            )?;
            eprintln!("wrote the {kind:?} to {}", out.display());
        }
    }
    Ok(())
}

/// Seconds for `--time-limit` and `--stage-seconds`: at least 0 and at most ten years, so that adding them
/// to the clock cannot overflow.
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

/// A batch size for `--batches`: at least 2, as the losses contrast the samples of a batch.
fn parse_batch(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(batch) if batch >= 2 => Ok(batch),
        _ => Err(format!(
            "expected a batch of at least 2 (the losses contrast its samples), got {text:?}"
        )),
    }
}

fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "worker".into()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
