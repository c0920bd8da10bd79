//! `s2v weights fetch` against a local HTTP server serving small stand-in files: bundles downloaded, checked,
//! unpacked and converted (the tiny Stable unCLIP model all the way to pictures), a run repeated without
//! downloading again, and what goes wrong on the way (a wrong digest, a cut connection, a full disk, a web
//! page instead of the file, a missing file, an unpinned file) each stopped with a clear error and no half
//! file under a final name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use burn::backend::Flex;
use s2v_models::checkpoint::{load_native, save_native};
use s2v_models::{Generator, GeneratorConfig, NetworkModule};
use s2v_serving::device::DeviceKind;
use s2v_tests::tiny_unclip_folder;
use s2v_worker::weights::catalog::Catalog;
use s2v_worker::weights::download::{DownloadError, partial_path};
use s2v_worker::weights::{FetchOptions, fetch};
use sha2::Digest;
use support::{TINY_WIDTH, save_tiny_sound2vision_encoder};

mod support;

/// How the stand-in server answers for one file.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    File,
    /// Promises the whole file, sends this many bytes, then drops the connection.
    CutAfter(usize),
    WebPage,
    /// Ignores `Range` and sends the whole file with 200, as a server without ranges does.
    NoRanges,
    /// Answers a `Range` with 206 but from the first byte.
    WrongRange,
}

#[derive(Default)]
struct Served {
    files: HashMap<String, (Bytes, Answer)>,
    /// Every request: the path and its `Range` header.
    requests: Vec<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Served>>;

struct Server {
    base: String,
    served: Shared,
}

impl Server {
    fn start() -> Self {
        let served = Shared::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{*name}", axum::routing::get(answer))
            .with_state(served.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { base, served }
    }

    fn put(&self, name: &str, bytes: Vec<u8>, answer: Answer) -> String {
        self.served
            .lock()
            .unwrap()
            .files
            .insert(name.to_string(), (bytes.into(), answer));
        format!("{}/{name}", self.base)
    }

    fn answer_with(&self, name: &str, answer: Answer) {
        self.served.lock().unwrap().files.get_mut(name).unwrap().1 = answer;
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.served.lock().unwrap().requests.clone()
    }
}

async fn answer(
    State(served): State<Shared>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .map(|v| v.to_str().unwrap().to_string());
    let file = {
        let mut served = served.lock().unwrap();
        served.requests.push((name.clone(), range.clone()));
        served.files.get(&name).cloned()
    };
    let Some((bytes, answer)) = file else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if answer == Answer::WebPage {
        let page = "<html><body>Too many users have viewed or downloaded this file recently.</body></html>";
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    }
    let range = range.filter(|_| answer != Answer::NoRanges);
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .filter(|_| answer != Answer::WrongRange)
        .unwrap_or(0);
    let total = bytes.len();
    if start >= total && range.is_some() {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response();
    }
    let rest = bytes.slice(start..);
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, rest.len());
    if range.is_some() {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        );
    }
    let body = match answer {
        Answer::CutAfter(sent) => {
            use futures_util::StreamExt;
            let part = bytes.slice(start..sent.max(start));
            // The cut comes after the part has gone out, as a dropped connection does.
            let cut = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err(std::io::Error::other("the stand-in server cut it"))
            });
            Body::from_stream(futures_util::stream::iter([Ok(part)]).chain(cut))
        }
        _ => Body::from(rest),
    };
    response.body(body).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Bytes that stand in for a checkpoint.
fn stand_in(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn options(catalog: &str, out: &Path, trust_unpinned: bool) -> FetchOptions {
    FetchOptions {
        catalog: Catalog::parse(catalog).unwrap(),
        out: out.to_path_buf(),
        trust_unpinned,
        device: DeviceKind::Flex,
    }
}

/// A one-bundle catalog that downloads `url` to `file`, pinned to `sha256` where given.
fn one_download(url: &str, file: &str, sha256: Option<&str>) -> String {
    let pin = sha256.map_or(String::new(), |d| format!(", sha256 = \"{d}\""));
    format!(
        "[[bundle]]\nname = \"x\"\nabout = \"a stand-in\"\npublished = \"here\"\n\
         steps = [{{ action = \"download\", url = \"{url}\", file = \"{file}\"{pin} }}]\n"
    )
}

fn download_error(error: &anyhow::Error) -> &DownloadError {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<DownloadError>())
        .unwrap_or_else(|| panic!("not a download error: {error:#}"))
}

fn tiny_generator_config() -> GeneratorConfig {
    let mut config = GeneratorConfig::biggan(2, 64, 20, 8, &[16]);
    config.feature_dim = 6;
    config
}

/// A `.tar.gz` holding `name` (inside a folder, as IC-GAN's does) and a file that is not asked for.
fn tar_gz(name: &str, bytes: &[u8]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(encoder);
    for (path, data) in [
        ("model/D_best0.pth".to_string(), &b"the discriminator"[..]),
        (format!("model/{name}"), bytes),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_pinned_archive_is_downloaded_unpacked_and_converted_and_a_second_run_downloads_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_generator_config();
    let generator = Generator::<Flex>::init(&config, &Default::default()).unwrap();
    let checkpoint = dir.path().join("G_ema_best0.pth");
    save_native(&generator, &checkpoint, false).unwrap();
    let archive = tar_gz("G_ema_best0.pth", &std::fs::read(&checkpoint).unwrap());
    let digest = sha256_hex(&archive);
    let url = server.put("ic_gan/res64.tar.gz", archive, Answer::File);
    let catalog = format!(
        "[[bundle]]\nname = \"icgan\"\nabout = \"a tiny generator\"\npublished = \"here\"\nsteps = [\n\
         {{ action = \"download\", url = \"{url}\", file = \"res64.tar.gz\", sha256 = \"{digest}\" }},\n\
         {{ action = \"unpack\", archive = \"res64.tar.gz\", members = [\"G_ema_best0.pth\"] }},\n\
         {{ action = \"convert\", from = \"G_ema_best0.pth\", network = \"generator\", to = \"g.safetensors\" }},\n]\n"
    );
    let out = dir.path().join("weights");
    assert_eq!(
        fetch("icgan", &options(&catalog, &out, false)).unwrap(),
        ["icgan"]
    );

    let converted = std::fs::read(out.join("g.safetensors")).unwrap();
    let loaded: Generator<Flex> = load_native(&converted, &Default::default()).unwrap();
    assert_eq!(loaded.config(), config);
    assert!(
        !out.join("D_best0.pth").exists(),
        "only the named member is unpacked"
    );
    assert!(!partial_path(&out.join("res64.tar.gz")).exists());

    fetch("icgan", &options(&catalog, &out, false)).unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "the second run downloads nothing"
    );
}

#[test]
fn the_unclip_bundle_fetches_what_it_needs_converts_it_and_the_model_draws() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let diffusers = tiny_unclip_folder(dir.path());
    let encoder_file = dir.path().join("env.safetensors");
    save_tiny_sound2vision_encoder(&encoder_file);

    let mut steps = Vec::new();
    for path in files_under(&diffusers) {
        let relative = path.strip_prefix(&diffusers).unwrap().display().to_string();
        let name = format!("unclip/{relative}");
        let url = server.put(&name, std::fs::read(&path).unwrap(), Answer::File);
        steps.push(format!(
            "{{ action = \"download\", url = \"{url}\", file = \"sd/{relative}\" }}"
        ));
    }
    steps.push(
        "{ action = \"convert-unclip\", diffusers = \"sd\", audio_encoder = \"env.safetensors\", to = \"unclip\" }"
            .into(),
    );
    let encoder_url = server.put("env", std::fs::read(&encoder_file).unwrap(), Answer::File);
    let catalog = format!(
        "[[bundle]]\nname = \"env\"\nabout = \"a tiny encoder\"\npublished = \"here\"\n\
         steps = [{{ action = \"download\", url = \"{encoder_url}\", file = \"env.safetensors\" }}]\n\
         [[bundle]]\nname = \"unclip\"\nabout = \"a tiny unCLIP\"\npublished = \"here\"\nneeds = [\"env\"]\n\
         steps = [\n{}\n]\n",
        steps.join(",\n")
    );
    let catalog_file = dir.path().join("catalog.toml");
    std::fs::write(&catalog_file, catalog).unwrap();
    let out = dir.path().join("weights");

    let s2v = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_s2v"))
            .args(args)
            .output()
            .unwrap()
    };
    let fetch_args = [
        "weights",
        "fetch",
        "unclip",
        "--catalog",
        catalog_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let refused = s2v(&fetch_args);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("pins no SHA-256") && said.contains("--trust-unpinned"),
        "{said}"
    );
    assert!(!out.join("env.safetensors").exists());

    let trusted = s2v(&[&fetch_args[..], &["--trust-unpinned"]].concat());
    let said = String::from_utf8_lossy(&trusted.stderr);
    assert!(trusted.status.success(), "{said}");
    assert!(said.contains("fetched env, unclip into"), "{said}");
    let env_downloads = server
        .requests()
        .iter()
        .filter(|(name, _)| name == "env")
        .count();
    assert_eq!(
        env_downloads, 2,
        "the kept download is resumed, not fetched again"
    );

    let pictures = dir.path().join("pictures.npy");
    let embedding = dir.path().join("e.npy");
    ndarray_npy::write_npy(&embedding, &ndarray::Array2::<f32>::ones((1, TINY_WIDTH))).unwrap();
    let drawn = s2v(&[
        "unclip",
        "--model",
        out.join("unclip").to_str().unwrap(),
        "--embedding",
        embedding.to_str().unwrap(),
        "--steps",
        "2",
        "--out",
        pictures.to_str().unwrap(),
    ]);
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    let images: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&pictures).unwrap();
    assert_eq!(images.shape()[..2], [1, 3]);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_wrong_digest_is_refused_and_leaves_no_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.put("w.pth", stand_in(5000), Answer::File);
    let pinned = sha256_hex(b"the file as it was published");
    let pinned_catalog = options(
        &one_download(&url, "w.pth", Some(&pinned)),
        dir.path(),
        false,
    );
    let error = fetch("x", &pinned_catalog).unwrap_err();
    assert!(matches!(
        download_error(&error),
        DownloadError::Mismatch { .. }
    ));
    let said = format!("{error:#}");
    assert!(
        said.contains(&pinned) && said.contains(&sha256_hex(&stand_in(5000))),
        "{said}"
    );
    assert!(!dir.path().join("w.pth").exists());
    assert!(!partial_path(&dir.path().join("w.pth")).exists());

    // A file already at the name with another digest is named and left alone.
    std::fs::write(dir.path().join("w.pth"), b"put here by hand").unwrap();
    let error = fetch("x", &pinned_catalog).unwrap_err();
    assert!(matches!(
        download_error(&error),
        DownloadError::ExistingMismatch { .. }
    ));
    assert!(format!("{error:#}").contains("remove it to download it again"));
    assert_eq!(
        std::fs::read(dir.path().join("w.pth")).unwrap(),
        b"put here by hand"
    );
}

#[test]
fn a_cut_connection_keeps_what_arrived_and_the_next_run_resumes_from_there() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = stand_in(200_000);
    let url = server.put("big.pth", bytes.clone(), Answer::CutAfter(70_000));
    let catalog = one_download(&url, "big.pth", Some(&sha256_hex(&bytes)));
    let dest = dir.path().join("big.pth");

    let error = fetch("x", &options(&catalog, dir.path(), false)).unwrap_err();
    match download_error(&error) {
        DownloadError::Cut {
            received, total, ..
        } => assert_eq!((*received, *total), (70_000, Some(200_000))),
        other => panic!("expected a cut, got {other}"),
    }
    assert!(format!("{error:#}").contains("run the command again to resume"));
    assert!(!dest.exists(), "no half file under the final name");
    assert_eq!(
        std::fs::metadata(partial_path(&dest)).unwrap().len(),
        70_000
    );

    server.answer_with("big.pth", Answer::File);
    fetch("x", &options(&catalog, dir.path(), false)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(
        server.requests().last().unwrap().1.as_deref(),
        Some("bytes=70000-")
    );
    assert!(!partial_path(&dest).exists());
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_stops_with_a_clear_error_and_removes_the_partial_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.put("w.pth", stand_in(100_000), Answer::File);
    let dest = dir.path().join("w.pth");
    // Writes to /dev/full fail as on a full disk (ENOSPC).
    std::os::unix::fs::symlink("/dev/full", partial_path(&dest)).unwrap();
    let error = fetch(
        "x",
        &options(&one_download(&url, "w.pth", None), dir.path(), true),
    )
    .unwrap_err();
    assert!(matches!(
        download_error(&error),
        DownloadError::DiskFull { .. }
    ));
    assert!(
        format!("{error:#}").contains("the disk is full"),
        "{error:#}"
    );
    assert!(!dest.exists());
    assert!(std::fs::symlink_metadata(partial_path(&dest)).is_err());
}

#[test]
fn a_web_page_a_missing_file_and_an_unpinned_file_are_each_named() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();

    let page = server.put("quota", stand_in(10), Answer::WebPage);
    let error = fetch(
        "x",
        &options(&one_download(&page, "a.pth", None), dir.path(), true),
    )
    .unwrap_err();
    assert!(matches!(
        download_error(&error),
        DownloadError::WebPage { .. }
    ));
    assert!(!dir.path().join("a.pth").exists());

    let missing = format!("{}/nowhere.pth", server.base);
    let error = fetch(
        "x",
        &options(&one_download(&missing, "b.pth", None), dir.path(), true),
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("answered 404 Not Found"),
        "{error:#}"
    );

    let url = server.put("c.pth", stand_in(3000), Answer::File);
    let catalog = one_download(&url, "c.pth", None);
    let error = fetch("x", &options(&catalog, dir.path(), false)).unwrap_err();
    match download_error(&error) {
        DownloadError::Unpinned { actual, .. } => {
            assert_eq!(actual.to_string(), sha256_hex(&stand_in(3000)))
        }
        other => panic!("expected an unpinned file, got {other}"),
    }
    assert!(!dir.path().join("c.pth").exists());
    fetch("x", &options(&catalog, dir.path(), true)).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("c.pth")).unwrap(),
        stand_in(3000)
    );
}

#[test]
fn a_partial_file_the_server_will_not_continue_is_fetched_again_from_the_start() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = stand_in(50_000);
    // The server sends the whole file at once, or its first byte under a 206 and then again on a plain request.
    for (answer, requests) in [(Answer::NoRanges, 1), (Answer::WrongRange, 2)] {
        let url = server.put("w.pth", bytes.clone(), answer);
        let dest = dir.path().join("w.pth");
        let _ = std::fs::remove_file(&dest);
        std::fs::write(partial_path(&dest), b"bytes of another file").unwrap();
        let before = server.requests().len();
        let catalog = one_download(&url, "w.pth", Some(&sha256_hex(&bytes)));
        fetch("x", &options(&catalog, dir.path(), false)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        let asked = &server.requests()[before..];
        assert_eq!(asked.len(), requests);
        assert_eq!(asked[0].1.as_deref(), Some("bytes=21-"));
    }
}
