//! The API's validation and error answers, in process: the router with a real generator runtime (the reference
//! fixture's generator) and encoders, driven with `tower::ServiceExt::oneshot`. The real binary's tests
//! (`server_api.rs`, `broker.rs`, `s3_store.rs`) cover what needs a process: restarts, load, the broker.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use burn::backend::Flex;
use http_body_util::BodyExt;
use s2v_models::checkpoint::{load_native, to_native_bytes};
use s2v_models::{AudioEncoder, Generator, ImageEncoder, NetworkModule, load_checkpoint};
use s2v_server::generators::Generators;
use s2v_server::store::Store;
use s2v_server::{AppState, EncoderWeights, Limits, router};
use s2v_serving::encoders::EncoderService;
use s2v_serving::networks::generator_model_info;
use s2v_serving::{GeneratorRuntime, RuntimeConfig};
use s2v_shared::wire::{DoneEvent, ErrorBody, ImageEvent, ModelInfo, ServedModel};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The reference generator (2048-d latents) and, when asked, the reference encoders.
fn app(data: &std::path::Path, with_encoders: bool, limits: Limits) -> Router {
    let generator_file = s2v_tests::fixture("generator.pth");
    let generator: Generator<Flex> = load_checkpoint(&generator_file, &Default::default()).unwrap();
    let model = generator_model_info(Some(&generator_file)).unwrap();
    serve(data, generator, model, with_encoders, limits)
}

fn serve(
    data: &std::path::Path,
    generator: Generator<Flex>,
    model: ModelInfo,
    with_encoders: bool,
    limits: Limits,
) -> Router {
    let device = Default::default();
    let runtime = GeneratorRuntime::start(generator, device, RuntimeConfig::default());
    let mut audio_encoder_weights = None;
    let encoders = with_encoders.then(|| {
        let audio: AudioEncoder<Flex> =
            load_checkpoint(&s2v_tests::fixture("audio_encoder.pth"), &device).unwrap();
        audio_encoder_weights = Some(EncoderWeights::new(
            to_native_bytes(&audio, true).unwrap(),
            audio.config().embedding_dim,
        ));
        let image: ImageEncoder<Flex> =
            load_checkpoint(&s2v_tests::fixture("image_encoder.pth.tar"), &device).unwrap();
        EncoderService::start(Some(audio), Some(image), device, 4)
    });
    router(Arc::new(AppState {
        generators: Some(Generators::Local { runtime, model }),
        encoders,
        audio_encoder_weights,
        store: Store::open(data).unwrap(),
        limits,
        metrics: Default::default(),
        page: None,
    }))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// An error answer's body, which every error must have.
    fn error(&self) -> ErrorBody {
        assert_eq!(self.headers["content-type"], "application/json");
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.body))
    }
}

/// Sends one request as a client on loopback (the rate limit is per client address).
async fn send(
    app: &Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, Method::GET, path, "text/plain", Vec::new()).await
}

async fn served_model(app: &Router) -> ServedModel {
    serde_json::from_slice(&get(app, "/api/model").await.body).unwrap()
}

async fn generate(app: &Router, body: Value) -> Answer {
    send(
        app,
        Method::POST,
        "/api/generate",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

fn latent() -> Vec<f32> {
    s2v_tests::service::latent(1, 2048)
}

/// `s2v_errors_total{kind="..."}` as the metrics page says it.
async fn errors_counted(app: &Router, kind: &str) -> u64 {
    let page = String::from_utf8(get(app, "/metrics").await.body.to_vec()).unwrap();
    let prefix = format!("s2v_errors_total{{kind=\"{kind}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_generation_requests_get_400_with_a_json_error_and_are_counted() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), false, Limits::default());
    let mut huge: Vec<f64> = latent().into_iter().map(f64::from).collect();
    huge[3] = 1e39; // beyond f32: becomes infinity
    let bad = [
        (json!({"latent": [1.0, 2.0], "count": 1}), "2048 values"),
        (json!({"latent": latent(), "count": 0}), "count"),
        (json!({"latent": latent(), "count": 17}), "count"),
        (json!({"latent": huge, "count": 1}), "finite"),
        (json!({"latent": vec![0.0; 2048], "count": 1}), "zeros"),
        (
            json!({"latent": latent(), "count": 1, "truncation": -1}),
            "truncation",
        ),
        (
            json!({"latent": latent(), "count": 1, "model": "other"}),
            "unknown model",
        ),
        (
            json!({"latent": latent(), "count": 1, "colour": "blue"}),
            "colour",
        ),
    ];
    for (body, says) in &bad {
        let answer = generate(&app, body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let error = answer.error();
        assert_eq!(error.error, "bad_request");
        assert!(error.detail.contains(says), "{}: {}", says, error.detail);
    }
    let post = |body: &[u8], content_type: &'static str| {
        send(
            &app,
            Method::POST,
            "/api/generate",
            content_type,
            body.to_vec(),
        )
    };
    assert_eq!(
        post(b"{not json", "application/json").await.error().error,
        "bad_request"
    );
    let wrong_type = post(b"{}", "text/plain").await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(wrong_type.error().error, "unsupported_media_type");
    let too_large = post(&vec![b' '; 1024 * 1024], "application/json").await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error().error, "too_large");
    for path in [
        format!("/img/{}.png", "0".repeat(64)),
        "/img/..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("/api/generations/{}", "a".repeat(32)),
        format!("/s/{}", "a".repeat(32)),
    ] {
        let answer = get(&app, &path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error().error, "not_found");
    }
    // Each answer was counted once, under its kind.
    assert_eq!(
        errors_counted(&app, "bad_request").await,
        bad.len() as u64 + 1
    );
    assert_eq!(errors_counted(&app, "unsupported_media_type").await, 1);
    assert_eq!(errors_counted(&app, "too_large").await, 1);
    assert_eq!(errors_counted(&app, "not_found").await, 4);
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_streams_its_images_then_its_share_link() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), false, Limits::default());
    let answer = generate(&app, json!({"latent": latent(), "count": 2, "seed": 4})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    let events: Vec<(&str, &str)> = text
        .split("\n\n")
        .filter(|block| block.contains("event:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {block:?}"))
            };
            (field("event: "), field("data: "))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["image", "image", "done"]);
    for (i, (_, data)) in events[..2].iter().enumerate() {
        let image: ImageEvent = serde_json::from_str(data).unwrap();
        assert_eq!(image.index, i);
        let png = get(&app, &image.url).await;
        assert_eq!(png.status, StatusCode::OK);
        assert_eq!(png.headers["content-type"], "image/png");
    }
    let done: DoneEvent = serde_json::from_str(events[2].1).unwrap();
    assert_eq!(done.share, format!("/s/{}", done.id));
    let record: Value = serde_json::from_slice(
        &get(&app, &format!("/api/generations/{}", done.id))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(record["seed"], 4);
    assert_eq!(record["images"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_are_not_files_of_their_kind_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), true, Limits::default());
    for (path, body, status, kind) in [
        (
            "/api/encode-audio",
            b"not audio at all, just words".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "undecodable",
        ),
        (
            "/api/encode-image",
            b"not an image either".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "undecodable",
        ),
        (
            "/api/encode-audio",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/encode-audio",
            vec![0u8; 11 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ] {
        let answer = send(&app, Method::POST, path, "application/octet-stream", body).await;
        assert_eq!(answer.status, status, "{path}");
        assert_eq!(answer.error().error, kind, "{path}");
    }
    assert_eq!(errors_counted(&app, "undecodable").await, 2);

    // A server without encoders says so, and when to try again.
    let without = self::app(data.path(), false, Limits::default());
    let answer = send(
        &without,
        Method::POST,
        "/api/encode-audio",
        "audio/wav",
        vec![1, 2, 3],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(answer.error().error, "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        rate_burst: 2,
        rate_period_ms: 60_000,
        ..Limits::default()
    };
    let app = app(data.path(), false, limits);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let answer = generate(&app, json!({"latent": [1.0], "count": 1})).await;
        statuses.push(answer.status.as_u16());
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers.contains_key("retry-after"));
            assert_eq!(answer.error().error, "busy");
        }
    }
    assert_eq!(statuses, [400, 400, 429, 429]);
    assert_eq!(errors_counted(&app, "busy").await, 2);
    // Reading results is not limited.
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), false, Limits::default());
    let doc: Value = serde_json::from_slice(&get(&app, "/api/openapi.json").await.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/encode-audio",
            "/api/encode-image",
            "/api/generate",
            "/api/generations/{id}",
            "/api/model",
            "/api/openapi.json",
            "/api/weights/audio-encoder/{version}.safetensors",
            "/healthz",
            "/img/{sha256}.png",
            "/metrics",
            "/model/notice",
            "/s/{id}"
        ]
    );
    // This server's latent length is the one described.
    assert_eq!(
        doc["components"]["schemas"]["GenerateRequest"]["properties"]["latent"]["minItems"],
        2048
    );
    // Every documented GET without parameters answers.
    for path in ["/api/openapi.json", "/healthz", "/metrics"] {
        assert_eq!(get(&app, path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_learns_the_model_and_fetches_the_encoders_weights_once() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), true, Limits::default());
    let served = served_model(&app).await;
    assert_eq!(served.model.id, "generator");
    assert_eq!((served.latent_length, served.resolution), (2048, 128));
    let url = served
        .audio_encoder
        .expect("this server has an audio encoder");
    let weights = get(&app, &url).await;
    assert_eq!(weights.status, StatusCode::OK);
    assert!(
        weights.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    // What a page downloads loads into the encoder the server runs.
    let encoder: AudioEncoder<Flex> = load_native(&weights.body, &Default::default()).unwrap();
    assert_eq!(encoder.config().embedding_dim, 2048);
    // A browser that has them asks once more at most, and is told they have not changed.
    let mut request = Request::get(&url)
        .header("if-none-match", weights.headers["etag"].clone())
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let again = app.clone().oneshot(request).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // Another version is not served.
    let stale = get(&app, "/api/weights/audio-encoder/0000.safetensors").await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND);

    // Without an audio encoder the page is told to encode on the server, and cannot.
    let without = self::app(data.path(), false, Limits::default());
    let served = served_model(&without).await;
    assert_eq!(served.audio_encoder, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_built_page_the_root_says_how_to_build_it() {
    let data = tempfile::tempdir().unwrap();
    let app = app(data.path(), false, Limits::default());
    let root = get(&app, "/").await;
    assert_eq!(root.status, StatusCode::OK);
    let text = String::from_utf8(root.body.to_vec()).unwrap();
    assert!(text.contains("scripts/build-page"), "{text}");
    // Other paths the API does not know are not found, as JSON.
    let other = get(&app, "/api/nothing").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.error().error, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_model_links_the_notice_of_its_training_data_and_other_models_do_not() {
    let data = tempfile::tempdir().unwrap();
    let default_model = serve(
        data.path(),
        s2v_models::default_model::load(&Default::default()).unwrap(),
        generator_model_info(None).unwrap(),
        false,
        Limits::default(),
    );
    let served = served_model(&default_model).await;
    let url = served
        .data_notice
        .expect("the default model's notice is linked");
    let page = get(&default_model, &url).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    // The embedded notice, rendered: its verdict and its per-package tables.
    assert!(
        html.contains("<h2>What applies to the weights</h2>"),
        "{html}"
    );
    assert!(html.contains("distributed under GPL-2"), "{html}");
    assert!(html.contains("<table>"), "{html}");

    // Weights given on the command line come without one: their owner knows what trained them.
    let other = app(data.path(), false, Limits::default());
    let served = served_model(&other).await;
    assert_eq!(served.data_notice, None);
    let missing = get(&other, "/model/notice").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error().error, "not_found");
}
