//! `s2v`: the Sound2Vision command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use s2v_models::NetworkKind;
use s2v_models::unclip::pipeline::Sampling;
use s2v_models::unclip::schedulers::SchedulerKind;
use s2v_serving::broker::{WorkerOptions, serve_jobs};
use s2v_serving::device::{DeviceKind, dispatch};
use s2v_serving::diffusion::DiffusionArgs;
use s2v_serving::networks::generator_model_info;
use s2v_serving::runtime::{RuntimeConfig, StartRuntime};
use s2v_train::dataset::Dataset;
use s2v_train::dataset::build::{BuildOptions, LABEL_COUNTS_CSV, build_default};
use s2v_train::dataset::notice::data_notice;
use s2v_train::eval::{EvalJob, EvalOptions};
use s2v_train::trainer::{StageProgress, TrainArgs, TrainJob};
use s2v_worker::arrays::Array;
use s2v_worker::bench::{Bench, BenchTarget};
use s2v_worker::commands::{
    self, Convert, DEFAULT_BATCH, EncodeAudio, EncodeImage, Generate, ImageInput, NoiseSource,
    PixelRange,
};
use s2v_worker::unclip::{CPU_PARAMETER_LIMIT, ConvertUnclip, EmbeddingSource, Unclip};
use s2v_worker::weights::catalog::Catalog;
use s2v_worker::weights::{FetchOptions, fetch};

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
    EncodeAudio(EncodeAudioArgs),
    /// Image features (one row per image) from image files or an already normalised N x 3 x 224 x 224 array.
    EncodeImage(EncodeImageArgs),
    /// Images from features: OUT.npy gets the raw N x 3 x H x W tanh output, a folder gets PNG files.
    Generate(GenerateArgs),
    /// Trains the three networks on a data set (resumes from the checkpoints in --out).
    Train(TrainArgs),
    /// Judges a model on a data set's held-out pairs; writes report.json and pictures to --out.
    Eval(EvalOptions),
    /// Training data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Runs a generator worker that takes jobs from a NATS JetStream queue (`s2v-server --nats`).
    Worker(WorkerArgs),
    /// Converts a PyTorch checkpoint to the project's own format (safetensors with the configuration inside).
    Convert(ConvertArgs),
    /// Times one network at the published size with random weights; prints one JSON line.
    Bench(BenchArgs),
    /// Pictures from sounds with the diffusion variant (Stable unCLIP 2.1), from a folder that
    /// `convert-unclip` wrote: OUT.npy gets N x 3 x H x W in [0, 1], a folder gets PNG files.
    Unclip(UnclipArgs),
    /// Converts a diffusers Stable unCLIP folder and Sound2Vision's audio encoder (`sound2vision_env.pth`)
    /// into the folder `unclip` reads: f16 weights, the empty prompt's text states, no text encoder.
    ConvertUnclip(ConvertUnclipArgs),
    /// The authors' published weights.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Downloads a bundle of published weights (resuming what an earlier run left), checks each file against
    /// the catalog's SHA-256 and converts it into the files `s2v` and the server read.
    Fetch(FetchArgs),
    /// Lists the catalog's bundles.
    List {
        /// A catalog of your own (the built-in one is `worker/weights.toml`).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

#[derive(Args)]
struct FetchArgs {
    /// sound2scene, swav, icgan, sound2vision or unclip (see `s2v weights list`).
    bundle: String,
    /// The folder all bundles go to (files the bundle needs from another are read there).
    #[arg(long)]
    out: PathBuf,
    /// A catalog of your own: other addresses (a mirror) or digests (the built-in one is `worker/weights.toml`).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Keep files whose SHA-256 the catalog does not pin (each one's digest is printed).
    #[arg(long)]
    trust_unpinned: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["audio", "embedding"])))]
struct UnclipArgs {
    /// A folder `s2v convert-unclip` wrote.
    #[arg(long)]
    model: PathBuf,
    /// Sounds, encoded by the model's audio encoder.
    #[arg(long, num_args = 1..)]
    audio: Vec<PathBuf>,
    /// N x width embeddings instead of sounds.
    #[arg(long)]
    embedding: Option<PathBuf>,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    steps: u16,
    /// Classifier-free guidance (1 turns it off).
    #[arg(long, default_value_t = 10.0)]
    guidance: f64,
    #[arg(long, value_enum, default_value = "pndm")]
    scheduler: SchedulerArg,
    /// The image-noising timestep applied to the embedding (the paper's is 0).
    #[arg(long, default_value_t = 0)]
    noise_level: usize,
    /// Side of the pictures in pixels (the model's own when left out: 768 for Stable unCLIP 2.1).
    #[arg(long)]
    size: Option<usize>,
    /// Seeds the starting latents and the embedding's noise (one stream, latents first).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Starting latents N x 4 x h x w instead of seeded ones.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// The embedding's noise, N x width, instead of seeded.
    #[arg(long)]
    image_noise: Option<PathBuf>,
    /// Run a full-size model on the CPU even though it takes very long.
    #[arg(long)]
    force: bool,
    /// UNets above this many parameters are refused on the CPU without --force (tests lower it).
    #[arg(long, hide = true, default_value_t = CPU_PARAMETER_LIMIT)]
    cpu_parameter_limit: usize,
    /// OUT.npy, or a folder for PNG files.
    #[arg(long)]
    out: PathBuf,
}

/// `--scheduler`'s values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchedulerArg {
    Pndm,
    Ddim,
    Dpm,
}

#[derive(Args)]
struct ConvertUnclipArgs {
    /// The diffusers folder of Stable unCLIP 2.1 (`stabilityai/stable-diffusion-2-1-unclip`).
    #[arg(long)]
    diffusers: PathBuf,
    /// Sound2Vision's audio encoder (`sound2vision_env.pth`, or a converted file).
    #[arg(long)]
    audio_encoder: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(value_enum)]
    target: BenchTarget,
    /// Batch sizes, timed one after the other in this process (so kernels compiled for one are reused).
    #[arg(long, num_args = 1.., default_value = "1")]
    batch: Vec<usize>,
    /// Timed calls after the first.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Writes the last output (.npy) of each batch size to DIR/TARGET-bBATCH.npy, for comparing devices.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Downloads Tux Paint's stamps and Openclipart with apt-get and writes the default model's data set.
    BuildDefault(BuildOptions),
    /// Writes the notice that goes beside weights trained on a data set: its packages, their licences and
    /// credits, and the licence that follows for the weights.
    Notice(NoticeArgs),
    /// Prints the path of every picture the data set lists, one a line, in the order `s2v train
    /// --target-embeddings` reads its rows.
    Pictures {
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Args)]
struct NoticeArgs {
    /// The data set folder (with its `items.csv`).
    #[arg(long)]
    data: PathBuf,
    /// The packages as unpacked for the build (`--unpacked` of `build-default`); the build's own `unpacked/`
    /// when left out. Their `copyright` files name the holders.
    #[arg(long)]
    unpacked: Option<PathBuf>,
    /// The Markdown file to write (`models/default/NOTICE.md` for the default model).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct EncodeAudioArgs {
    /// Weights (PyTorch or s2v format); the embedded default model when left out.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(required = true)]
    audio: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch_size: usize,
}

#[derive(Args)]
struct EncodeImageArgs {
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

#[derive(Args)]
struct ConvertArgs {
    #[arg(long = "in")]
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Which network the checkpoint holds (told from its tensor names when left out).
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    /// Store weights in f16 (half the size; batch-norm statistics stay f32).
    #[arg(long)]
    f16: bool,
}

/// `--network`'s values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NetworkArg {
    AudioEncoder,
    ImageEncoder,
    Generator,
}

impl From<NetworkArg> for NetworkKind {
    fn from(arg: NetworkArg) -> Self {
        match arg {
            NetworkArg::AudioEncoder => NetworkKind::AudioEncoder,
            NetworkArg::ImageEncoder => NetworkKind::ImageEncoder,
            NetworkArg::Generator => NetworkKind::Generator,
        }
    }
}

#[derive(Args)]
struct WorkerArgs {
    /// The NATS server (with JetStream enabled).
    #[arg(long)]
    nats: String,
    /// Generator weights (PyTorch or s2v format); the embedded default model when left out.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Serve the diffusion variant instead: a folder made by `s2v convert-unclip`.
    #[arg(long, conflicts_with = "checkpoint")]
    unclip: Option<PathBuf>,
    #[command(flatten)]
    diffusion: DiffusionArgs,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let device = cli.device;
    match cli.command {
        Command::Spectrogram { audio, out } => {
            commands::write_spectrogram(&commands::spectrogram_of_file(&audio)?, &out)
        }
        Command::EncodeAudio(args) => encode_audio(device, args),
        Command::EncodeImage(args) => encode_image(device, args),
        Command::Generate(args) => generate(device, args),
        Command::Train(args) => train(device, args),
        Command::Eval(options) => evaluate(device, options),
        Command::Data(DataCommand::BuildDefault(options)) => build_data(&options),
        Command::Data(DataCommand::Notice(args)) => write_data_notice(&args),
        Command::Data(DataCommand::Pictures { data }) => {
            for (path, _) in Dataset::open(&data)?.listed_pictures() {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Worker(args) => serve_as_worker(device, args),
        Command::Convert(args) => convert(device, args),
        Command::Bench(args) => bench(device, args),
        Command::Unclip(args) => unclip(device, args),
        Command::Weights(WeightsCommand::Fetch(args)) => fetch_weights(device, args),
        Command::Weights(WeightsCommand::List { catalog }) => {
            for bundle in read_catalog(catalog.as_deref())?.bundles {
                println!("{:<14} {}", bundle.name, bundle.about);
                println!("{:<14} published at {}", "", bundle.published);
            }
            Ok(())
        }
        Command::ConvertUnclip(args) => {
            let job = ConvertUnclip {
                diffusers: args.diffusers,
                audio_encoder: args.audio_encoder,
                out: args.out.clone(),
            };
            let manifest = dispatch(device, job)?;
            eprintln!(
                "wrote {} ({} M UNet parameters, {}-d embeddings)",
                args.out.display(),
                manifest.unet_parameters / 1_000_000,
                manifest.embedding_width
            );
            Ok(())
        }
    }
}

fn unclip(device: DeviceKind, args: UnclipArgs) -> anyhow::Result<()> {
    let source = match args.embedding {
        Some(path) => EmbeddingSource::File(path),
        None => EmbeddingSource::Audio(args.audio),
    };
    let scheduler = match args.scheduler {
        SchedulerArg::Pndm => SchedulerKind::Pndm,
        SchedulerArg::Ddim => SchedulerKind::Ddim,
        SchedulerArg::Dpm => SchedulerKind::DpmSolver,
    };
    let job = Unclip {
        model: args.model,
        source,
        sampling: Sampling {
            steps: args.steps.into(),
            guidance: args.guidance,
            scheduler,
            noise_level: args.noise_level,
        },
        size: args.size,
        seed: args.seed,
        latents: args.latents,
        image_noise: args.image_noise,
        on_cpu: device.resolve() == DeviceKind::Flex,
        cpu_parameter_limit: args.cpu_parameter_limit,
        force: args.force,
    };
    commands::write_images(&dispatch(device, job)?, PixelRange::Unit, &args.out)
}

fn bench(device: DeviceKind, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
    }
    for batch in args.batch {
        let target_name = args
            .target
            .to_possible_value()
            .map(|v| v.get_name().to_string());
        let job = Bench {
            target: args.target,
            batch,
            runs: args.runs,
            out: args
                .out
                .as_ref()
                .map(|dir| dir.join(format!("{}-b{batch}.npy", target_name.unwrap_or_default()))),
        };
        let report = dispatch(device, job)?;
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn encode_audio(device: DeviceKind, args: EncodeAudioArgs) -> anyhow::Result<()> {
    let job = EncodeAudio {
        checkpoint: args.checkpoint,
        audio: args.audio,
        batch_size: args.batch_size,
    };
    dispatch(device, job)?.write(&args.out)
}

fn encode_image(device: DeviceKind, args: EncodeImageArgs) -> anyhow::Result<()> {
    let input = match args.input {
        Some(path) => ImageInput::Normalised(path),
        None if args.images.is_empty() => anyhow::bail!("give image files or --input X.npy"),
        None => ImageInput::Files(args.images),
    };
    let job = EncodeImage {
        checkpoint: args.checkpoint,
        input,
        batch_size: args.batch_size,
    };
    dispatch(device, job)?.write(&args.out)
}

fn generate(device: DeviceKind, args: GenerateArgs) -> anyhow::Result<()> {
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
    let images: Array = dispatch(device, job)?;
    commands::write_images(&images, PixelRange::Signed, &args.out)
}

fn train(device: DeviceKind, args: TrainArgs) -> anyhow::Result<()> {
    let options = args.into_options()?;
    let (out, only) = (options.out.clone(), options.only);
    if dispatch(device, TrainJob(options))? {
        match only {
            Some(stage) => eprintln!("{} is trained: {}", stage.name(), out.display()),
            None => eprintln!("all three networks are trained: {}", out.display()),
        }
    } else if StageProgress::any_saved(&out) {
        eprintln!(
            "stopped with a checkpoint in {}; run again to go on",
            out.display()
        );
    } else {
        // The time ran out while preparing (encoding pictures, say): nothing to resume but what is cached.
        eprintln!(
            "stopped before the first checkpoint in {}; run again to start (pictures encoded so far are cached)",
            out.display()
        );
    }
    Ok(())
}

fn evaluate(device: DeviceKind, options: EvalOptions) -> anyhow::Result<()> {
    let out = options.out.clone();
    let report = dispatch(device, EvalJob(options))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("pictures and report.json are in {}", out.display());
    Ok(())
}

fn write_data_notice(args: &NoticeArgs) -> anyhow::Result<()> {
    let dataset = Dataset::open(&args.data)?;
    std::fs::write(&args.out, data_notice(&dataset, args.unpacked.as_deref()))
        .with_context(|| format!("cannot write {}", args.out.display()))
}

fn build_data(options: &BuildOptions) -> anyhow::Result<()> {
    let summary = build_default(options)?;
    for skipped in &summary.skipped {
        eprintln!("skipped {skipped}");
    }
    for (reason, count) in &summary.left_out {
        eprintln!("left out {count} items: {reason}");
    }
    eprintln!(
        "wrote {} training pairs, {} held-out pairs, {} image-only pictures, and {} training and {} \
         held-out sounds without a picture to {}",
        summary.pairs_train,
        summary.pairs_test,
        summary.image_only,
        summary.audio_only_train,
        summary.audio_only_test,
        options.out.display()
    );
    let both = summary
        .per_label
        .values()
        .filter(|(s, p)| *s > 0 && *p > 0)
        .count();
    eprintln!(
        "{both} fine labels have training sounds and pictures; counts per label are in {}",
        options.out.join(LABEL_COUNTS_CSV).display()
    );
    Ok(())
}

fn serve_as_worker(device: DeviceKind, args: WorkerArgs) -> anyhow::Result<()> {
    let config = RuntimeConfig {
        queue_capacity: args.jobs as usize,
        max_batch: args.max_batch as usize,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
    };
    let (runtime, model) = match &args.unclip {
        Some(dir) => args.diffusion.start(dir, device, config)?,
        None => {
            let job = StartRuntime {
                checkpoint: args.checkpoint.clone(),
                config,
            };
            let model = generator_model_info(args.checkpoint.as_deref())?;
            (dispatch(device, job)?, model)
        }
    };
    let options = WorkerOptions {
        url: args.nats,
        name: args.name.unwrap_or_else(default_worker_name),
        jobs: args.jobs as usize,
        ack_wait: Duration::from_millis(args.ack_wait_ms),
    };
    tokio::runtime::Runtime::new()?.block_on(serve_jobs(runtime, model, options))
}

fn convert(device: DeviceKind, args: ConvertArgs) -> anyhow::Result<()> {
    let job = Convert {
        input: args.input,
        output: args.out.clone(),
        network: args.network.map(NetworkKind::from),
        half: args.f16,
    };
    let kind = dispatch(device, job)?;
    eprintln!("wrote the {kind} to {}", args.out.display());
    Ok(())
}

fn read_catalog(path: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    Ok(match path {
        Some(path) => Catalog::read(path)?,
        None => Catalog::built_in(),
    })
}

fn fetch_weights(device: DeviceKind, args: FetchArgs) -> anyhow::Result<()> {
    let options = FetchOptions {
        catalog: read_catalog(args.catalog.as_deref())?,
        out: args.out.clone(),
        trust_unpinned: args.trust_unpinned,
        device,
    };
    let fetched = fetch(&args.bundle, &options)?;
    eprintln!("fetched {} into {}", fetched.join(", "), args.out.display());
    Ok(())
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
