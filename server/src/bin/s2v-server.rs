//! `s2v-server`: the generation service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use burn::prelude::Backend;
use clap::Parser;
use s2v_models::checkpoint::to_native_bytes;
use s2v_models::unclip::convert::AUDIO_ENCODER;
use s2v_models::{AudioEncoder, ImageEncoder, NetworkModule};
use s2v_server::generators::Generators;
use s2v_server::routes::Page;
use s2v_server::store::Store;
use s2v_server::{AppState, EncoderWeights, Limits, router};
use s2v_serving::broker::BrokerClient;
use s2v_serving::device::{DeviceKind, OnBackend, dispatch};
use s2v_serving::diffusion::DiffusionArgs;
use s2v_serving::encoders::EncoderService;
use s2v_serving::networks::{generator_model_info, load_network};
use s2v_serving::runtime::{RuntimeConfig, StartRuntime};

#[derive(Parser)]
#[command(
    name = "s2v-server",
    version,
    about = "The sound2vision generation service"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where images and generation records are kept.
    #[arg(long, default_value = "s2v-data")]
    data_dir: PathBuf,
    /// Compute device; `auto` takes CUDA, then a hardware GPU through wgpu, then the CPU, as built.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceKind,
    /// The built web page (trunk's output), served at `/` when the folder exists.
    #[arg(long, default_value = "dist")]
    page: PathBuf,
    /// Serve the page without the headers that make it cross-origin isolated: it can then be embedded in other
    /// sites' frames, but encodes on one thread instead of one per core.
    #[arg(long)]
    no_cross_origin_isolation: bool,
    /// Generator weights: IC-GAN's `G_ema_best0.pth` or a checkpoint made by `s2v convert`. Without it the
    /// embedded default model serves, encoders included.
    #[arg(long, conflicts_with = "nats")]
    generator: Option<PathBuf>,
    /// Serve the diffusion variant instead: a Stable unCLIP folder converted by `s2v convert-unclip`. Its
    /// audio encoder serves `POST /api/encode-audio` and the page.
    #[arg(long, conflicts_with_all = ["nats", "generator"])]
    unclip: Option<PathBuf>,
    #[command(flatten)]
    diffusion: DiffusionArgs,
    /// Audio encoder weights (`sound2scene.pth` or a converted checkpoint) for `POST /api/encode-audio`;
    /// the default model's when neither this nor --generator is given.
    #[arg(long)]
    audio_encoder: Option<PathBuf>,
    /// Image encoder weights (SwAV's `swav_800ep_pretrain.pth.tar` or a converted checkpoint) for
    /// `POST /api/encode-image`; the default model's when neither this nor --generator is given.
    #[arg(long)]
    image_encoder: Option<PathBuf>,
    /// Send generation jobs to worker processes (`s2v worker --nats URL`) through this NATS JetStream
    /// server instead of running the generator here.
    #[arg(long)]
    nats: Option<String>,
    /// Keep images and generation records in this S3 bucket instead of --data-dir (endpoint, region and
    /// credentials from the AWS_* environment variables).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// Key prefix inside --s3-bucket.
    #[arg(long, default_value = "", requires = "s3_bucket")]
    s3_prefix: String,
    /// Requests that may wait for the generator; more are answered 429.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Images per forward pass at most.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Requests to the generate and encode routes one client may send in a burst.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    rate_burst: u32,
    /// After a burst, one request per this many milliseconds per client; faster ones get 429.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    rate_period_ms: u64,
    /// How long to wait for more requests before running a batch that is not full, in milliseconds.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
}

struct StartEncoders {
    audio: Option<Option<PathBuf>>,
    image: Option<Option<PathBuf>>,
    queue: usize,
}

impl OnBackend for StartEncoders {
    /// The service, and the audio encoder's weights for pages.
    type Output = (EncoderService, Option<EncoderWeights>);

    /// Each `Some(None)` is the embedded default model's encoder.
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<Self::Output> {
        let audio: Option<AudioEncoder<B>> = self
            .audio
            .as_ref()
            .map(|path| load_network(path.as_deref(), &device))
            .transpose()?;
        let weights = match (&self.audio, &audio) {
            (Some(path), Some(encoder)) => Some(page_weights(path.is_none(), encoder)?),
            _ => None,
        };
        let image: Option<ImageEncoder<B>> = self
            .image
            .map(|path| load_network(path.as_deref(), &device))
            .transpose()?;
        Ok((
            EncoderService::start(audio, image, device, self.queue),
            weights,
        ))
    }
}

/// The audio encoder as pages download it: the embedded f16 file as it is, or the given one converted.
fn page_weights<B: Backend>(
    embedded: bool,
    encoder: &AudioEncoder<B>,
) -> anyhow::Result<EncoderWeights> {
    let bytes = if embedded {
        s2v_models::default_model::AUDIO_ENCODER.to_vec()
    } else {
        to_native_bytes(encoder, true).context("cannot convert the audio encoder for pages")?
    };
    Ok(EncoderWeights::new(bytes, encoder.config().embedding_dim))
}

/// The generator runtime in this process: the diffusion model's when `--unclip` is given, else the GAN's.
fn local_generators(args: &Args, config: RuntimeConfig) -> anyhow::Result<Generators> {
    if let Some(dir) = &args.unclip {
        let (runtime, model) = args.diffusion.start(dir, args.device, config)?;
        return Ok(Generators::Local { runtime, model });
    }
    let model = generator_model_info(args.generator.as_deref())?;
    let runtime = dispatch(
        args.device,
        StartRuntime {
            checkpoint: args.generator.clone(),
            config,
        },
    )?;
    Ok(Generators::Local { runtime, model })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let store = match &args.s3_bucket {
        Some(bucket) => Store::s3(bucket, &args.s3_prefix)
            .with_context(|| format!("cannot open the S3 bucket {bucket}"))?,
        None => Store::open(&args.data_dir).with_context(|| {
            format!("cannot open the data directory {}", args.data_dir.display())
        })?,
    };
    let generators = match &args.nats {
        // Workers elsewhere own the generators; they announce their model.
        Some(url) => Generators::Broker(Box::new(BrokerClient::connect(url, args.queue).await?)),
        None => {
            let config = RuntimeConfig {
                queue_capacity: args.queue,
                max_batch: args.max_batch,
                batch_wait: Duration::from_millis(args.batch_wait_ms),
            };
            local_generators(&args, config)?
        }
    };
    // The default model brings its own encoders; other generators take the encoders given with them, and a
    // converted diffusion model its own audio encoder.
    let embedded = args.generator.is_none() && args.unclip.is_none();
    let with_default = |given: &Option<PathBuf>| match given {
        Some(path) => Some(Some(path.clone())),
        None => embedded.then_some(None),
    };
    let audio = match (&args.audio_encoder, &args.unclip) {
        (None, Some(dir)) => Some(Some(dir.join(AUDIO_ENCODER))),
        _ => with_default(&args.audio_encoder),
    };
    let image = with_default(&args.image_encoder);
    let (encoders, audio_encoder_weights) = if audio.is_some() || image.is_some() {
        let job = StartEncoders {
            audio,
            image,
            queue: args.queue,
        };
        let (service, weights) = dispatch(args.device, job)?;
        (Some(service), weights)
    } else {
        (None, None)
    };
    let state = Arc::new(AppState {
        generators: Some(generators),
        encoders,
        audio_encoder_weights,
        store,
        limits: Limits {
            rate_burst: args.rate_burst,
            rate_period_ms: args.rate_period_ms,
            ..Limits::default()
        },
        metrics: Default::default(),
        page: args.page.is_dir().then(|| Page {
            dir: args.page.clone(),
            cross_origin_isolated: !args.no_cross_origin_isolation,
        }),
    });
    if !args.page.is_dir() {
        tracing::warn!(
            "no built page in {}: `/` says how to build it (scripts/build-page)",
            args.page.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    // Tests and scripts read the actual address from this line.
    println!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
