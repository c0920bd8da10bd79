//! `s2v`: the Sound2Vision command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use s2v_worker::arrays::Array;
use s2v_worker::commands::{
    self, Convert, DEFAULT_BATCH, EncodeAudio, EncodeImage, Generate, ImageInput, NetworkKind,
    NoiseSource,
};
use s2v_worker::device::{DeviceKind, dispatch};

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
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(required = true)]
        audio: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: usize,
    },
    /// Image features (one row per image) from image files or an already normalised N x 3 x 224 x 224 array.
    EncodeImage {
        #[arg(long)]
        checkpoint: PathBuf,
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

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    checkpoint: PathBuf,
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
