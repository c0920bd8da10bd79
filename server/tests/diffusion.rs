//! The diffusion variant through the service, on loopback: `s2v-server --unclip` with the tiny converted
//! Stable unCLIP model announces its kind and controls, streams each picture's previews before the picture,
//! records the steps and guidance it used, and refuses the controls it does not have; an `s2v worker
//! --unclip` behind the broker does the same.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s2v_tests::service::{Process, get_json, get_text, post_json, read_events, start_nats};
use serde_json::{Value, json};

mod support;

use support::{WIDTH, tiny_converted};

async fn post(client: &reqwest::Client, base: &str, body: Value) -> reqwest::Response {
    post_json(client, base, "/api/generate", &body).await
}

/// A latent the tiny model takes.
fn latent() -> Vec<f32> {
    (0..WIDTH).map(|i| i as f32 / 3.0 - 0.7).collect()
}

/// Two pictures of [`latent`] from seed 5: the stream's events (name, data), after a 200.
async fn generate_two(client: &reqwest::Client, base: &str) -> Vec<(String, Value)> {
    let response = post(
        client,
        base,
        json!({"latent": latent(), "count": 2, "seed": 5}),
    )
    .await;
    assert_eq!(response.status(), 200);
    read_events(response, |_, _| ())
        .await
        .into_iter()
        .map(|(name, data, _)| (name, data))
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diffusion_model_streams_previews_then_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_converted(dir.path());
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--unclip")
        .arg(&model)
        .args(["--device", "flex", "--steps", "3", "--preview-every", "1"]);
    let (_server, base) = s2v_tests::service::start_server(command);
    let client = reqwest::Client::new();

    let served = get_json(&client, &base, "/api/model").await;
    assert_eq!(served["model"]["id"], "tiny-unclip");
    assert_eq!(served["latent_length"], WIDTH);
    assert_eq!(served["resolution"], 16);
    assert_eq!(served["kind"]["kind"], "diffusion");
    assert_eq!(served["kind"]["steps"], 3);
    assert!(
        served["audio_encoder"].as_str().is_some(),
        "the model's own audio encoder is offered to pages: {served}"
    );

    let events = generate_two(&client, &base).await;
    // PNDM's 3 steps are 4 UNet calls: a preview of each picture after each of the first three.
    assert_eq!(
        names(&events),
        [
            "preview", "preview", "preview", "preview", "preview", "preview", "image", "image",
            "done"
        ],
        "{events:?}"
    );
    for (_, preview) in &events[..6] {
        assert_eq!(preview["steps"], 4);
        let jpeg = preview["jpeg"].as_str().unwrap();
        assert!(jpeg.starts_with("data:image/jpeg;base64,"), "{jpeg}");
    }
    let done = &events[8].1;
    let id = done["id"].as_str().unwrap();
    let record = get_json(&client, &base, &format!("/api/generations/{id}")).await;
    assert_eq!(
        (record["steps"].clone(), record["guidance"].clone()),
        (json!(3), json!(10.0))
    );
    let image = events[6].1["url"].as_str().unwrap();
    let png = client
        .get(format!("{base}{image}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Controls of its own are taken; a GAN's are refused by name.
    let latent = latent();
    let own = post(
        &client,
        &base,
        json!({"latent": latent, "count": 1, "steps": 4, "guidance": 1.0}),
    )
    .await;
    let events = read_events(own, |_, _| ()).await;
    assert_eq!(events.last().unwrap().0, "done");
    let refused = post(
        &client,
        &base,
        json!({"latent": latent, "count": 1, "truncation": 0.5}),
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("truncation"),
        "{body}"
    );
    let refused = post(
        &client,
        &base,
        json!({"latent": latent, "count": 1, "steps": 0}),
    )
    .await;
    assert_eq!(refused.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diffusion_worker_behind_the_broker_streams_previews_too() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_converted(dir.path());
    let (_nats, nats) = start_nats(&dir.path().join("nats"));
    let s2v = Path::new(env!("CARGO_BIN_EXE_s2v-server")).with_file_name("s2v");
    assert!(
        s2v.is_file(),
        "{} is missing: cargo test --workspace builds it",
        s2v.display()
    );
    let _worker = Process(
        Command::new(s2v)
            .args(["--device", "flex", "worker", "--nats", &nats, "--unclip"])
            .arg(&model)
            .args(["--steps", "3", "--preview-every", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s2v worker starts"),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--nats", &nats]);
    let (_server, base) = s2v_tests::service::start_server(command);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get_text(&client, &base, "/metrics")
        .await
        .contains("s2v_workers 1")
    {
        assert!(
            Instant::now() < deadline,
            "the worker never announced itself"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = get_json(&client, &base, "/api/model").await;
    assert_eq!(served["kind"]["kind"], "diffusion", "{served}");
    assert_eq!(served["kind"]["preview_every"], 2);

    let events = generate_two(&client, &base).await;
    // 4 UNet calls, a preview after the second of each picture.
    assert_eq!(
        names(&events),
        ["preview", "preview", "image", "image", "done"],
        "{events:?}"
    );
    assert_eq!(events[0].1["step"], 2);
}
