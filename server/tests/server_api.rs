//! The generation service end to end, on loopback: the real `s2v-server` binary with the reference generator
//! fixture, for what needs a process (restarts, load, the command line's defaults). The API's validation and
//! error answers are tested in process, in `router.rs`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use s2v_tests::service::{Process, get_json, get_status, get_text, read_events};
use serde_json::{Value, json};

struct Server {
    _process: Process,
    base: String,
}

fn start(data_dir: &Path, extra: &[&str]) -> Server {
    let generator = s2v_tests::fixture("generator.pth");
    let mut args = vec!["--generator", generator.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_with(data_dir, &args)
}

/// A server with only these arguments besides its address and data directory.
fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command.arg("--data-dir").arg(data_dir).args(extra);
    let (process, base) = s2v_tests::service::start_server(command);
    Server {
        _process: process,
        base,
    }
}

fn latent(seed: u32) -> Vec<f32> {
    s2v_tests::service::latent(seed, 2048)
}

/// The events of a `text/event-stream` response, with the time each arrived.
async fn events(response: reqwest::Response) -> Vec<(String, Value, Instant)> {
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    read_events(response, |_, _| ()).await
}

async fn generate(client: &reqwest::Client, base: &str, body: Value) -> reqwest::Response {
    s2v_tests::service::post_json(client, base, "/api/generate", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_stream_and_share_links_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let body = json!({"latent": latent(1), "count": 4, "seed": 11});
    let (share, urls) = {
        // One image per forward pass, so the images must arrive one after another.
        let server = start(data.path(), &["--max-batch", "1"]);
        let all = events(generate(&client, &server.base, body.clone()).await).await;
        let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["image", "image", "image", "image", "done"]);
        for (i, (_, data, _)) in all[..4].iter().enumerate() {
            assert_eq!(data["index"], i);
        }
        // Each image takes a forward pass of its own (about 0.1 s here): had the server held the images back
        // until the end, they would all arrive together.
        let spread = all[3].2 - all[0].2;
        assert!(
            spread > std::time::Duration::from_millis(100),
            "the first image arrived only {spread:?} before the last"
        );
        let urls: Vec<String> = all[..4]
            .iter()
            .map(|(_, d, _)| d["url"].as_str().unwrap().to_string())
            .collect();
        let done = &all[4].1;
        let share = done["share"].as_str().unwrap().to_string();
        assert_eq!(share, format!("/s/{}", done["id"].as_str().unwrap()));

        // Same seed, latent and model: the same images.
        let again = events(generate(&client, &server.base, body.clone()).await).await;
        let again_urls: Vec<&str> = again[..4]
            .iter()
            .map(|(_, d, _)| d["url"].as_str().unwrap())
            .collect();
        assert_eq!(again_urls, urls);

        (share, urls)
    };
    // A new server process on the same data directory serves the same link.
    let server = start(data.path(), &[]);
    let page = client
        .get(format!("{}{share}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("og:image") && page.contains("og:title") && page.contains(&urls[0]),
        "{page}"
    );
    assert!(page.contains("href=\"/\""), "links back to the app");
    let id = share.trim_start_matches("/s/");
    let record: Value = get_json(&client, &server.base, &format!("/api/generations/{id}")).await;
    assert_eq!(record["seed"], 11);
    assert_eq!(record["model"]["id"], "generator");
    assert_eq!(record["images"].as_array().unwrap().len(), 4);

    let image = client
        .get(format!("{}{}", server.base, urls[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(
        image.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = image.headers()["etag"].clone();
    let bytes = image.bytes().await.unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let cached = client
        .get(format!("{}{}", server.base, urls[0]))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_batches_form_under_load() {
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &["--queue", "2", "--max-batch", "4", "--batch-wait-ms", "50"],
    );
    let client = reqwest::Client::new();
    // 12 concurrent clients, 2 images each, a bounded number of requests.
    let requests = (0..12u32).map(|i| {
        let client = client.clone();
        let base = server.base.clone();
        async move {
            let response = generate(
                &client,
                &base,
                json!({"latent": latent(i), "count": 2, "seed": i}),
            )
            .await;
            match response.status().as_u16() {
                200 => {
                    let all = events(response).await;
                    assert_eq!(all.last().unwrap().0, "done");
                    200
                }
                429 => {
                    assert!(response.headers().contains_key("retry-after"));
                    429
                }
                other => panic!("unexpected status {other}"),
            }
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        served >= 1 && refused >= 1,
        "served {served}, refused {refused}"
    );

    let metrics = get_text(&client, &server.base, "/metrics").await;
    let count = |size: usize| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("s2v_batches_total{{size=\"{size}\"}}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let batches: f64 = (1..=4).map(count).sum();
    let images: f64 = (1..=4).map(|s| s as f64 * count(s)).sum();
    assert!(
        batches > 0.0 && images / batches > 1.0,
        "mean batch size {} ({metrics})",
        images / batches
    );
    assert!(metrics.contains("s2v_images_total") && metrics.contains("s2v_first_image_seconds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_encoded_on_the_server() {
    let data = tempfile::tempdir().unwrap();
    let audio = s2v_tests::fixture("audio_encoder.pth");
    let image = s2v_tests::fixture("image_encoder.pth.tar");
    let server = start(
        data.path(),
        &[
            "--audio-encoder",
            audio.to_str().unwrap(),
            "--image-encoder",
            image.to_str().unwrap(),
        ],
    );
    let client = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, content_type: &'static str| {
        client
            .post(format!("{}{path}", server.base))
            .header("content-type", content_type)
            .header("connection", "close")
            .body(body)
            .send()
    };

    let wav = std::fs::read(s2v_tests::fixture("harmonic_3p7s.wav")).unwrap();
    let response = post("/api/encode-audio", wav, "audio/wav").await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let latent: Vec<f32> = body["latent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let reference = s2v_tests::npy("harmonic_3p7s.audio_embedding.npy");
    let err = s2v_tests::relative_error(&latent, reference.as_slice().unwrap());
    assert!(
        err < 1e-3,
        "server-side audio embedding relative error {err}"
    );

    // The latent goes straight into /api/generate.
    let all = events(
        generate(
            &client,
            &server.base,
            json!({"latent": latent, "count": 1, "seed": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(all.last().unwrap().0, "done");

    let mut png = Vec::new();
    image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .unwrap();
    let response = post("/api/encode-image", png, "image/png").await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["latent"].as_array().unwrap().len(), 2048);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_page_is_served_at_the_root() {
    let data = tempfile::tempdir().unwrap();
    let page = tempfile::tempdir().unwrap();
    std::fs::write(
        page.path().join("index.html"),
        "<!doctype html><title>sound2vision page</title>",
    )
    .unwrap();
    let server = start(data.path(), &["--page", page.path().to_str().unwrap()]);
    let client = reqwest::Client::new();
    let root = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    assert!(root.text().await.unwrap().contains("sound2vision page"));
    // The API still answers its own routes.
    assert_eq!(get_status(&client, &server.base, "/healthz").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_files_go_compressed_to_browsers_that_take_it() {
    let data = tempfile::tempdir().unwrap();
    let page = tempfile::tempdir().unwrap();
    let wasm = vec![7u8; 4096];
    std::fs::write(page.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(page.path().join("page-0123456789abcdef_bg.wasm"), &wasm).unwrap();
    // What scripts/build-page writes beside each file (here a stand-in: the server sends it as it is).
    std::fs::write(
        page.path().join("page-0123456789abcdef_bg.wasm.gz"),
        b"compressed",
    )
    .unwrap();
    let server = start(data.path(), &["--page", page.path().to_str().unwrap()]);
    let client = reqwest::Client::new();
    let url = format!("{}/page-0123456789abcdef_bg.wasm", server.base);
    let compressed = client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    // Its name carries its hash: kept forever. The root is revalidated.
    assert!(
        compressed.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let root = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(root.headers()["cache-control"], "no-cache");
    assert_eq!(compressed.bytes().await.unwrap().as_ref(), b"compressed");
    let plain = client.get(&url).send().await.unwrap();
    assert!(!plain.headers().contains_key("content-encoding"));
    assert_eq!(plain.bytes().await.unwrap().as_ref(), wasm.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_weights_the_embedded_default_model_serves() {
    let data = tempfile::tempdir().unwrap();
    let server = start_with(data.path(), &[]);
    let client = reqwest::Client::new();
    let wav = std::fs::read(s2v_tests::fixture("tone_chirp_10s.wav")).unwrap();
    let answer: Value = client
        .post(format!("{}/api/encode-audio", server.base))
        .header("content-type", "audio/wav")
        .body(wav)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let latent = answer["latent"].as_array().unwrap().clone();
    assert_eq!(latent.len(), 512, "the default model's latent length");
    let doc: Value = get_json(&client, &server.base, "/api/openapi.json").await;
    assert_eq!(
        doc["components"]["schemas"]["GenerateRequest"]["properties"]["latent"]["minItems"],
        512
    );
    let response = generate(
        &client,
        &server.base,
        json!({"latent": latent, "count": 2, "seed": 5}),
    )
    .await;
    let events = events(response).await;
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["image", "image", "done"]);
    let id = events[2].1["id"].as_str().unwrap();
    let record: Value = get_json(&client, &server.base, &format!("/api/generations/{id}")).await;
    assert_eq!(record["model"]["id"], "s2v-default");
    let url = events[0].1["url"].as_str().unwrap();
    let png = client
        .get(format!("{}{url}", server.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let picture = image::load_from_memory(&png).unwrap();
    assert_eq!((picture.width(), picture.height()), (64, 64));
    // A latent of the paper's length does not fit this model.
    let response = generate(
        &client,
        &server.base,
        json!({"latent": vec![0.5; 2048], "count": 1}),
    )
    .await;
    assert_eq!(response.status(), 400);
}
