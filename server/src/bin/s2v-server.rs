//! `s2v-server`: the generation service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use burn::prelude::Backend;
use clap::Parser;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, load_checkpoint};
use s2v_server::store::Store;
use s2v_server::{AppState, Limits, ModelInfo, router};
use s2v_worker::device::{DeviceKind, OnBackend, dispatch};
use s2v_worker::encoders::EncoderService;
use s2v_worker::runtime::{GeneratorRuntime, RuntimeConfig};
use sha2::{Digest, Sha256};

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
    /// Generator weights: IC-GAN's `G_ema_best0.pth` or a checkpoint made by `s2v convert`.
    #[arg(long)]
    generator: PathBuf,
    /// Audio encoder weights (`sound2scene.pth` or a converted checkpoint) for `POST /api/encode-audio`.
    #[arg(long)]
    audio_encoder: Option<PathBuf>,
    /// Image encoder weights (SwAV's `swav_800ep_pretrain.pth.tar` or a converted checkpoint) for
    /// `POST /api/encode-image`.
    #[arg(long)]
    image_encoder: Option<PathBuf>,
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
    audio: Option<PathBuf>,
    image: Option<PathBuf>,
    queue: usize,
}

impl OnBackend for StartEncoders {
    type Output = EncoderService;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<EncoderService> {
        let load = |path: &PathBuf| format!("cannot load {}", path.display());
        let audio: Option<AudioEncoder<B>> = self
            .audio
            .as_ref()
            .map(|p| load_checkpoint(p, &device).with_context(|| load(p)))
            .transpose()?;
        let image: Option<ImageEncoder<B>> = self
            .image
            .as_ref()
            .map(|p| load_checkpoint(p, &device).with_context(|| load(p)))
            .transpose()?;
        Ok(EncoderService::start(audio, image, device, self.queue))
    }
}

struct StartRuntime {
    checkpoint: PathBuf,
    config: RuntimeConfig,
}

impl OnBackend for StartRuntime {
    type Output = GeneratorRuntime;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<GeneratorRuntime> {
        let generator: Generator<B> =
            load_checkpoint(&self.checkpoint, &device).with_context(|| {
                format!(
                    "cannot load the generator from {}",
                    self.checkpoint.display()
                )
            })?;
        Ok(GeneratorRuntime::start(generator, device, self.config))
    }
}

/// The model's id is its file name; its version the start of the file's SHA-256, so a changed file is a new
/// version even under the same name.
fn model_info(path: &std::path::Path) -> anyhow::Result<ModelInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("generator")
        .to_string();
    Ok(ModelInfo {
        id,
        version: hex::encode(&Sha256::digest(&bytes)[..6]),
    })
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
    let store = Store::open(&args.data_dir)
        .with_context(|| format!("cannot open the data directory {}", args.data_dir.display()))?;
    let model = model_info(&args.generator)?;
    let config = RuntimeConfig {
        queue_capacity: args.queue,
        max_batch: args.max_batch,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
    };
    let runtime = dispatch(
        args.device,
        StartRuntime {
            checkpoint: args.generator.clone(),
            config,
        },
    )?;
    let encoders = if args.audio_encoder.is_some() || args.image_encoder.is_some() {
        let job = StartEncoders {
            audio: args.audio_encoder.clone(),
            image: args.image_encoder.clone(),
            queue: args.queue,
        };
        Some(dispatch(args.device, job)?)
    } else {
        None
    };
    let state = Arc::new(AppState {
        runtime: Some(runtime),
        encoders,
        model,
        store,
        limits: Limits {
            rate_burst: args.rate_burst,
            rate_period_ms: args.rate_period_ms,
            ..Limits::default()
        },
        metrics: Default::default(),
        page_dir: args.page.is_dir().then(|| args.page.clone()),
    });
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
