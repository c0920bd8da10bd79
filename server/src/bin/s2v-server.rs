//! `s2v-server`: the generation service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use burn::prelude::Backend;
use clap::Parser;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, NetworkModule, default_model};
use s2v_server::store::Store;
use s2v_server::{AppState, Limits, ModelInfo, router};
use s2v_worker::commands::load_network;
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
    /// Generator weights: IC-GAN's `G_ema_best0.pth` or a checkpoint made by `s2v convert`. Without it the
    /// embedded default model serves, encoders included.
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Audio encoder weights (`sound2scene.pth` or a converted checkpoint) for `POST /api/encode-audio`.
    #[arg(long, requires = "generator")]
    audio_encoder: Option<PathBuf>,
    /// Image encoder weights (SwAV's `swav_800ep_pretrain.pth.tar` or a converted checkpoint) for
    /// `POST /api/encode-image`.
    #[arg(long, requires = "generator")]
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

/// Where a network's weights come from.
#[derive(Clone)]
enum Weights {
    File(PathBuf),
    /// The embedded default model.
    Default,
}

impl Weights {
    fn load<B: Backend, N: NetworkModule<B>>(&self, device: &B::Device) -> anyhow::Result<N> {
        let path = match self {
            Weights::File(path) => Some(path.as_path()),
            Weights::Default => None,
        };
        load_network(path, device)
    }
}

struct StartEncoders {
    audio: Option<Weights>,
    image: Option<Weights>,
    queue: usize,
}

impl OnBackend for StartEncoders {
    type Output = EncoderService;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<EncoderService> {
        let audio: Option<AudioEncoder<B>> =
            self.audio.as_ref().map(|w| w.load(&device)).transpose()?;
        let image: Option<ImageEncoder<B>> =
            self.image.as_ref().map(|w| w.load(&device)).transpose()?;
        Ok(EncoderService::start(audio, image, device, self.queue))
    }
}

struct StartRuntime {
    weights: Weights,
    config: RuntimeConfig,
}

impl OnBackend for StartRuntime {
    type Output = GeneratorRuntime;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<GeneratorRuntime> {
        let generator: Generator<B> = self.weights.load(&device)?;
        Ok(GeneratorRuntime::start(generator, device, self.config))
    }
}

/// The model's id is its file name (or the default model's id); its version the start of the weights'
/// SHA-256, so changed weights are a new version even under the same name.
fn model_info(weights: &Weights) -> anyhow::Result<ModelInfo> {
    let (id, bytes) = match weights {
        Weights::File(path) => (
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("generator")
                .to_string(),
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        Weights::Default => (
            default_model::MODEL_ID.to_string(),
            default_model::GENERATOR.to_vec(),
        ),
    };
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
    let generator = args
        .generator
        .clone()
        .map_or(Weights::Default, Weights::File);
    let model = model_info(&generator)?;
    let config = RuntimeConfig {
        queue_capacity: args.queue,
        max_batch: args.max_batch,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
    };
    let runtime = dispatch(
        args.device,
        StartRuntime {
            weights: generator.clone(),
            config,
        },
    )?;
    // The default model brings its own encoders; other generators take the encoders given with them.
    let (audio, image) = match generator {
        Weights::Default => (Some(Weights::Default), Some(Weights::Default)),
        Weights::File(_) => (
            args.audio_encoder.clone().map(Weights::File),
            args.image_encoder.clone().map(Weights::File),
        ),
    };
    let encoders = if audio.is_some() || image.is_some() {
        let job = StartEncoders {
            audio,
            image,
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
