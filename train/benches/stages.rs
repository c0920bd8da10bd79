//! Per-stage CPU time and peak memory of the full published network sizes (random weights: the same work as
//! the real ones). Not a test: run it with
//!
//!     cargo bench -p s2v-train --bench stages
//!
//! Each stage runs in a fresh child process so that its peak resident memory (`VmHWM`) is its own.

use std::process::Command;
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use s2v_models::loss::info_nce_l2;
use s2v_models::{
    AudioEncoder, AudioEncoderConfig, Generator, GeneratorConfig, ImageEncoder, NetworkModule,
};
use s2v_shared::audio::{CLIP_SAMPLES, log_spectrogram};
use s2v_train::trainer::{Preset, Recipe};

type B = Flex;
type Ad = Autodiff<Flex>;
const STAGES: [&str; 7] = [
    "spectrogram",
    "audio-encoder",
    "generator-batch-1",
    "generator-batch-8",
    "default-audio-encoder-training-step-batch-16",
    "default-image-encoder-training-step-batch-48",
    "default-generator-training-step-batch-16",
];
const RUNS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time_runs(mut f: impl FnMut()) -> Duration {
    f(); // warm-up: first-call allocations and thread-pool start
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn run_stage(stage: &str) -> Duration {
    let device = Default::default();
    match stage {
        "spectrogram" => {
            let wave: Vec<f64> = (0..CLIP_SAMPLES)
                .map(|i| (i as f64 * 0.01).sin() * 0.5)
                .collect();
            time_runs(|| {
                log_spectrogram(&wave).unwrap();
            })
        }
        "audio-encoder" => {
            let encoder =
                AudioEncoder::<B>::init(&AudioEncoderConfig::published(), &device).unwrap();
            let input =
                Tensor::<B, 4>::random([1, 1, 257, 1004], Distribution::Normal(0.0, 1.0), &device);
            time_runs(|| {
                encoder.forward(input.clone()).into_data();
            })
        }
        batch if batch.starts_with("generator-batch-") => {
            let n: usize = batch["generator-batch-".len()..].parse().unwrap();
            let generator =
                Generator::<B>::init(&GeneratorConfig::published_128(), &device).unwrap();
            let z = Tensor::<B, 2>::random([n, 120], Distribution::Normal(0.0, 1.0), &device);
            let f = Tensor::<B, 2>::random([n, 2048], Distribution::Uniform(0.0, 1.0), &device);
            time_runs(|| {
                generator.forward(z.clone(), f.clone()).into_data();
            })
        }
        // One optimiser-free training step (forward, loss, backward) of the default model's networks: what
        // `s2v train` repeats on the CPU. Batch norm uses the batch's statistics here.
        "default-audio-encoder-training-step-batch-16" => {
            let recipe = Recipe::preset(Preset::Default);
            let encoder = AudioEncoder::<Ad>::init(&recipe.audio_encoder, &device).unwrap();
            let input = normal([16, 1, 257, 1004]);
            let visual = uniform([16, recipe.audio_encoder.embedding_dim]);
            time_runs(|| {
                let loss = info_nce_l2(encoder.forward(input.clone()), visual.clone());
                let _ = loss.backward();
            })
        }
        "default-image-encoder-training-step-batch-48" => {
            let recipe = Recipe::preset(Preset::Default);
            let encoder = ImageEncoder::<Ad>::init(&recipe.image_encoder, &device).unwrap();
            let size = recipe.resolution;
            let input = normal([48, 3, size, size]);
            time_runs(|| {
                let _ = encoder
                    .forward(input.clone())
                    .powi_scalar(2)
                    .mean()
                    .backward();
            })
        }
        "default-generator-training-step-batch-16" => {
            let recipe = Recipe::preset(Preset::Default);
            let generator = Generator::<Ad>::init(&recipe.generator, &device).unwrap();
            let z = normal([16, recipe.generator.dim_z()]);
            let f = uniform([16, recipe.generator.feature_dim]);
            time_runs(|| {
                let _ = generator.forward(z.clone(), f.clone()).mean().backward();
            })
        }
        other => panic!("unknown stage {other}"),
    }
}

/// Random inputs of a training step on the CPU: standard normal (spectrograms, pictures, noise) and uniform
/// in [0, 1) (features).
fn normal<const D: usize>(shape: [usize; D]) -> Tensor<Ad, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn uniform<const D: usize>(shape: [usize; D]) -> Tensor<Ad, D> {
    Tensor::random(shape, Distribution::Uniform(0.0, 1.0), &Default::default())
}

fn main() {
    if let Ok(stage) = std::env::var("S2V_BENCH_STAGE") {
        let time = run_stage(&stage);
        println!(
            "{stage}\t{:.1}\t{:.0}",
            time.as_secs_f64() * 1000.0,
            peak_rss_mib()
        );
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!("| stage | median wall time (ms, {RUNS} runs) | peak resident memory (MiB) |");
    println!("| --- | ---: | ---: |");
    for stage in STAGES
        .iter()
        .filter(|s| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str())))
    {
        let out = Command::new(std::env::current_exe().unwrap())
            .env("S2V_BENCH_STAGE", stage)
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = line.trim().split('\t').collect();
        match fields[..] {
            [name, ms, mib] => println!("| {name} | {ms} | {mib} |"),
            _ => println!(
                "| {stage} | failed: {} | |",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}
