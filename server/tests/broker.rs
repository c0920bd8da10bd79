//! The broker mode end to end, on loopback: Debian's `nats-server` with JetStream, the real `s2v-server` with
//! `--nats`, and two `s2v worker` processes, one of which is killed while it holds jobs. No job may be lost.
//! (Declared by the s2v-server package; `s2v` is the binary built beside `s2v-server`, which
//! `cargo test --workspace` builds.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use s2v_tests::service::{
    Process, get_json, get_status, get_text, latent, read_events, start_nats,
};
use serde_json::{Value, json};

fn s2v_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_s2v-server")).with_file_name("s2v");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --bin s2v` (cargo test --workspace does)",
        path.display()
    );
    path
}

fn start_server(data_dir: &Path, nats: &str, queue: usize) -> (Process, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--nats", nats, "--queue", &queue.to_string()]);
    s2v_tests::service::start_server(command)
}

/// A worker on the reference generator fixture; its log (job starts and ends) goes to `log`.
fn start_worker(nats: &str, name: &str, log: &Path, extra: &[&str]) -> Process {
    let generator = s2v_tests::fixture("generator.pth");
    Process(
        Command::new(s2v_binary())
            .args(["worker", "--nats", nats, "--name", name, "--checkpoint"])
            .arg(generator)
            .args(["--ack-wait-ms", "1500"])
            .args(extra)
            .env("RUST_LOG", "s2v_serving=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("s2v worker starts"),
    )
}

/// Reads a generation's events; sends a note on `first` when the first image arrives.
async fn run_generation(
    client: reqwest::Client,
    base: String,
    seed: u64,
    first: tokio::sync::mpsc::UnboundedSender<()>,
) -> Vec<(String, Value)> {
    let response = client
        .post(format!("{base}/api/generate"))
        .json(&json!({"latent": latent(seed as u32, 2048), "count": 4, "seed": seed}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    read_events(response, |name, _| {
        if name == "image" {
            let _ = first.send(());
        }
    })
    .await
    .into_iter()
    .map(|(name, data, _)| (name, data))
    .collect()
}

async fn wait_for_workers(client: &reqwest::Client, base: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = get_text(client, base, "/metrics").await;
        if metrics.contains(&format!("s2v_workers {count}")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never announced themselves"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_job_queue_answers_429_and_the_accepted_jobs_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, nats) = start_nats(&dir.path().join("jetstream"));
    // Room for two unfinished jobs; one worker that takes one job at a time.
    let (_server, base) = start_server(&dir.path().join("data"), &nats, 2);
    let _worker = start_worker(
        &nats,
        "only",
        &dir.path().join("worker.log"),
        &["--jobs", "1", "--max-batch", "2"],
    );
    let client = reqwest::Client::new();
    wait_for_workers(&client, &base, 1).await;
    let responses = futures_util::future::join_all((0..6u32).map(|seed| {
        client
            .post(format!("{base}/api/generate"))
            .json(&json!({"latent": latent(seed, 2048), "count": 16, "seed": seed}))
            .send()
    }))
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => accepted.push(response),
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], "busy");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted.len(), 2, "the queue holds two jobs");
    assert_eq!(refused, 4);
    for response in accepted {
        let text = tokio::time::timeout(Duration::from_secs(120), response.text())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text.matches("event: image").count(), 16);
        assert!(text.contains("event: done"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_cancels_the_rest_of_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, nats) = start_nats(&dir.path().join("jetstream"));
    let (_server, base) = start_server(&dir.path().join("data"), &nats, 8);
    let log = dir.path().join("worker.log");
    // One image per forward pass, so that sixteen take a while.
    let _worker = start_worker(&nats, "only", &log, &["--max-batch", "1"]);
    let client = reqwest::Client::new();
    wait_for_workers(&client, &base, 1).await;
    let response = client
        .post(format!("{base}/api/generate"))
        .json(&json!({"latent": latent(1, 2048), "count": 16, "seed": 1}))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: image") {
        text.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream); // the client leaves after its first image

    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let log = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("cancelled job")) {
            break line.to_string();
        }
        assert!(
            !log.contains("finished job"),
            "the job ran to its end although its client left:\n{log}"
        );
        assert!(Instant::now() < deadline, "no cancellation:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sent: usize = line
        .split("after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected log line {line}"));
    assert!(sent < 16, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_are_redelivered_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (_nats, nats) = start_nats(&dir.path().join("jetstream"));
    let (_server, base) = start_server(&dir.path().join("data"), &nats, 64);
    let client = reqwest::Client::new();

    // No worker yet: the service says so instead of queueing jobs nobody takes.
    assert_eq!(get_status(&client, &base, "/healthz").await, 503);
    let response = client
        .post(format!("{base}/api/generate"))
        .json(&json!({"latent": latent(0, 2048), "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    let doomed_log = dir.path().join("doomed.log");
    let mut doomed = start_worker(&nats, "doomed", &doomed_log, &["--max-batch", "2"]);
    let _survivor = start_worker(
        &nats,
        "survivor",
        &dir.path().join("survivor.log"),
        &["--max-batch", "2"],
    );
    wait_for_workers(&client, &base, 2).await;
    let openapi = get_json(&client, &base, "/api/openapi.json").await;
    assert!(openapi.to_string().contains("2048"));

    // Eight generations of four images at once; the doomed worker is killed as soon as the first image
    // arrives, while both workers hold jobs.
    let (first, mut firsts) = tokio::sync::mpsc::unbounded_channel();
    let generations: Vec<_> = (0..8u64)
        .map(|seed| {
            tokio::spawn(run_generation(
                client.clone(),
                base.clone(),
                100 + seed,
                first.clone(),
            ))
        })
        .collect();
    drop(first);
    firsts.recv().await.expect("a first image");
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();

    let log = std::fs::read_to_string(&doomed_log).unwrap();
    let started = log.matches("started job").count();
    let finished = log.matches("finished job").count();
    assert!(
        started > finished,
        "the killed worker held no unfinished job (started {started}, finished {finished}); the test \
         proves nothing\n{log}"
    );

    let mut records = Vec::new();
    for generation in generations {
        let events = tokio::time::timeout(Duration::from_secs(120), generation)
            .await
            .expect("every generation ends")
            .unwrap();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["image", "image", "image", "image", "done"],
            "{events:?}"
        );
        for (i, (_, data)) in events[..4].iter().enumerate() {
            assert_eq!(data["index"], i);
        }
        let id = events[4].1["id"].as_str().unwrap().to_string();
        let record = get_json(&client, &base, &format!("/api/generations/{id}")).await;
        assert_eq!(record["model"]["id"], "generator");
        records.push(record);
    }
    for record in &records {
        for hash in record["images"].as_array().unwrap() {
            let path = format!("/img/{}.png", hash.as_str().unwrap());
            assert_eq!(get_status(&client, &base, &path).await, 200);
        }
    }
    // Different seeds, different pictures: no redelivered job was answered with another job's images.
    let mut all: Vec<&str> = records
        .iter()
        .flat_map(|r| r["images"].as_array().unwrap())
        .map(|h| h.as_str().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 32);
}

#[test]
fn a_server_waits_for_jetstream_a_while_and_then_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // The job stream can never be created on it.
    let (_nats, nats) = s2v_tests::service::start_nats_without_jetstream();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_s2v-server"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--nats", &nats])
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("job stream"), "{said}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(30),
        "gave up after {waited:?}"
    );
}
