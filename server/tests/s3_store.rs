//! The S3 storage option end to end, on loopback: moto's S3-compatible server (from PyPI; `tests/setup`
//! installs it), the real `s2v-server` with `--s3-bucket`, a generation, and its share link after a restart.
//! (Declared by the s2v-server package, which owns the binary.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use s2v_tests::service::{Process, after, get_json, read_events, start_announcing};
use serde_json::json;

/// `$S2V_MOTO_SERVER`, else the virtual environment `tests/setup` makes, else `moto_server` on the PATH.
fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("S2V_MOTO_SERVER") {
        return path.into();
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/s2v-moto/bin/moto_server"));
    venv.filter(|p| p.is_file())
        .unwrap_or_else(|| "moto_server".into())
}

fn start_moto() -> (Process, String) {
    let mut command = Command::new(moto_server());
    // Port 0: one of its own choosing, which it prints as "Running on http://...".
    command.args(["-H", "127.0.0.1", "-p", "0"]);
    start_announcing(
        command,
        "moto_server (run tests/setup, or set S2V_MOTO_SERVER)",
        Duration::from_secs(30),
        |line| after(line, "Running on "),
    )
}

fn start_server(data_dir: &Path, endpoint: &str) -> (Process, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--generator")
        .arg(s2v_tests::fixture("generator.pth"))
        .args(["--s3-bucket", "s2v-test", "--s3-prefix", "deployment"])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    s2v_tests::service::start_server(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_live_in_the_bucket_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint) = start_moto();
    let client = reqwest::Client::new();
    // moto takes unsigned requests: make the bucket.
    let made = client
        .put(format!("{endpoint}/s2v-test"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");

    let latent = s2v_tests::service::latent(5, 2048);
    let (id, images) = {
        let (_server, base) = start_server(dir.path(), &endpoint);
        let response = client
            .post(format!("{base}/api/generate"))
            .json(&json!({"latent": latent, "count": 2, "seed": 5}))
            .send()
            .await
            .unwrap();
        let events = read_events(response, |_, _| ()).await;
        let (_, done, _) = events
            .iter()
            .find(|(name, _, _)| name == "done")
            .unwrap_or_else(|| panic!("no done event in {events:?}"));
        let id = done["id"].as_str().unwrap().to_string();
        let record = get_json(&client, &base, &format!("/api/generations/{id}")).await;
        let images: Vec<String> = record["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect();
        assert_eq!(images.len(), 2);
        (id, images)
    };

    // Everything went to the bucket, under the prefix; nothing to the local data directory.
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("s2v-test")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let mut keys: Vec<String> = bucket
        .list(None)
        .map(|meta| meta.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    let mut expected: Vec<String> = images
        .iter()
        .map(|hash| format!("deployment/images/{hash}.png"))
        .chain([format!("deployment/generations/{id}.json")])
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for hash in &images {
        let path = object_store::path::Path::from(format!("deployment/images/{hash}.png"));
        let png = bucket.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    // A new server on the same bucket still serves the share link and its images.
    let (_server, base) = start_server(dir.path(), &endpoint);
    let share = client.get(format!("{base}/s/{id}")).send().await.unwrap();
    assert_eq!(share.status(), 200);
    let html = share.text().await.unwrap();
    assert!(html.contains(&format!("/img/{}.png", images[0])));
    for hash in &images {
        let response = client
            .get(format!("{base}/img/{hash}.png"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["etag"], format!("\"{hash}\""));
    }
    let missing = client
        .get(format!("{base}/img/{}.png", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
