//! Time to first image and images per second against concurrency, through the real `s2v-server` on loopback.
//! Not a test: run it with
//!
//!     cargo bench -p s2v-server --bench load [-- full | -- default | -- broker | -- diffusion]
//!
//! By default it serves the reference fixture generator (G_ch=8, 128 px); `full` serves IC-GAN's published
//! size (G_ch=96, random weights, the same arithmetic as the real ones); `default` the embedded default
//! model (64 px, 512-d latents), as `s2v-server` serves it with no weights given; `broker` the fixture
//! generator in one `s2v worker` process behind `nats-server` (build it first: `cargo build --release --bin
//! s2v`); `diffusion` the tiny converted Stable unCLIP of the tests (16 px, 20 PNDM steps, a preview every
//! 5), which measures the runtime around the networks: continuous batching of UNet calls, previews, streaming.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use futures_util::StreamExt;
use s2v_models::{Generator, GeneratorConfig, NetworkModule};
use s2v_tests::service::{Process, get_text, latent, start_nats, start_server};
use serde_json::json;

#[path = "../tests/support/mod.rs"]
mod support;

const REQUESTS_PER_CLIENT: usize = 2;

/// When one request's events arrived, from sending it.
struct Timing {
    first_preview: Option<Duration>,
    first_image: Duration,
}

/// One request of one image.
async fn one(client: &reqwest::Client, base: &str, seed: u32, dim: usize) -> Timing {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/generate"))
        .json(&json!({"latent": latent(seed, dim), "count": 1, "seed": seed}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let (mut first_preview, mut first_image) = (None, None);
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_preview.is_none() && text.contains("event: preview") {
            first_preview = Some(started.elapsed());
        }
        if first_image.is_none() && text.contains("event: image") {
            first_image = Some(started.elapsed());
        }
    }
    assert!(text.contains("event: done"), "{text}");
    Timing {
        first_preview,
        first_image: first_image.expect("an image event"),
    }
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| ["full", "default", "broker", "diffusion"].contains(&a.as_str()));
    let broker = mode.as_deref() == Some("broker");
    let diffusion = mode.as_deref() == Some("diffusion");
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, dim, what) = match mode.as_deref() {
        Some("full") => {
            let path = dir.path().join("generator-full.safetensors");
            let generator =
                Generator::<Flex>::init(&GeneratorConfig::published_128(), &Default::default())
                    .unwrap();
            s2v_models::checkpoint::save_native(&generator, &path, false).unwrap();
            (Some(path), 2048, "G_ch=96, 128 px (published size)")
        }
        Some("broker") => (
            Some(s2v_tests::fixture("generator.pth")),
            2048,
            "G_ch=8, 128 px (reference fixture) in one `s2v worker` behind NATS JetStream",
        ),
        Some("diffusion") => (
            Some(support::tiny_converted(dir.path())),
            support::WIDTH,
            "the tests' tiny Stable unCLIP (16 px), 20 PNDM steps, a preview every 5",
        ),
        Some(_) => (None, 512, "the embedded default model (G_ch=8, 64 px)"),
        None => (
            Some(s2v_tests::fixture("generator.pth")),
            2048,
            "G_ch=8, 128 px (reference fixture)",
        ),
    };
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command.arg("--data-dir").arg(&data).args([
        "--max-batch",
        "8",
        "--batch-wait-ms",
        "10",
        "--rate-burst",
        "1000",
    ]);
    // In broker mode the worker process owns the generator; the server only relays.
    let mut helpers = Vec::new();
    if broker {
        let (nats_process, nats) = start_nats(&dir.path().join("jetstream"));
        helpers.push(nats_process);
        command.args(["--nats", &nats]);
        let s2v = std::path::Path::new(env!("CARGO_BIN_EXE_s2v-server")).with_file_name("s2v");
        assert!(
            s2v.is_file(),
            "build the worker first: cargo build --release --bin s2v"
        );
        helpers.push(Process(
            Command::new(s2v)
                .args(["worker", "--nats", &nats, "--checkpoint"])
                .arg(checkpoint.as_ref().unwrap())
                .args(["--max-batch", "8", "--batch-wait-ms", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    } else if diffusion {
        command.arg("--unclip").arg(checkpoint.as_ref().unwrap());
        command.args(["--steps", "20", "--preview-every", "5"]);
    } else if let Some(checkpoint) = &checkpoint {
        command.arg("--generator").arg(checkpoint);
    }
    let (_server, base) = start_server(command);
    let client = reqwest::Client::new();
    while client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    one(&client, &base, 0, dim).await; // warm-up

    println!("model: {what}");
    if diffusion {
        println!(
            "| concurrent clients | requests | median time to first preview (ms) | median time to first image (ms) | images per second | mean batch |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    } else {
        println!(
            "| concurrent clients | requests | median time to first image (ms) | images per second | mean batch |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: |");
    }
    let mut batches_before = batch_totals(&client, &base).await;
    for clients in [1usize, 2, 4, 8] {
        let started = Instant::now();
        let runs = (0..clients).map(|c| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let mut times = Vec::new();
                for r in 0..REQUESTS_PER_CLIENT {
                    times.push(one(&client, &base, (c * 100 + r) as u32 + 1, dim).await);
                }
                times
            }
        });
        let timings: Vec<Timing> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect();
        let elapsed = started.elapsed();
        let images = clients * REQUESTS_PER_CLIENT;
        if broker {
            // Workers report their batch counts once a second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let batches_after = batch_totals(&client, &base).await;
        let (passes, made) = (
            batches_after.0 - batches_before.0,
            batches_after.1 - batches_before.1,
        );
        batches_before = batches_after;
        let previews = if diffusion {
            let previews = timings
                .iter()
                .map(|t| t.first_preview.expect("a preview event"));
            format!(" {:.0} |", median(previews.collect()))
        } else {
            String::new()
        };
        println!(
            "| {clients} | {images} |{previews} {:.0} | {:.2} | {:.2} |",
            median(timings.iter().map(|t| t.first_image).collect()),
            images as f64 / elapsed.as_secs_f64(),
            made as f64 / passes.max(1) as f64
        );
    }
}

/// Forward passes and the images they made so far, from the server's `s2v_batches_total` counters.
async fn batch_totals(client: &reqwest::Client, base: &str) -> (u64, u64) {
    let text = get_text(client, base, "/metrics").await;
    text.lines()
        .filter_map(|line| line.strip_prefix("s2v_batches_total{size=\""))
        .filter_map(|rest| {
            let (size, count) = rest.split_once("\"} ")?;
            Some((size.parse::<u64>().ok()?, count.trim().parse::<u64>().ok()?))
        })
        .fold((0, 0), |(passes, images), (size, count)| {
            (passes + count, images + size * count)
        })
}
