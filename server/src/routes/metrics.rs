//! `GET /healthz` and `GET /metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::SharedState;
use crate::error::ErrorKind;

pub struct Metrics {
    registry: Registry,
    pub images: IntCounter,
    errors: IntCounterVec,
    pub first_image_seconds: Histogram,
    pub generation_seconds: Histogram,
    queue_depth: IntGauge,
    workers: IntGauge,
    batches: IntCounterVec,
    /// Serialises copying the runtime's counters into `batches` (two scrapes must not both add a delta).
    sync: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency_buckets = vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        let images = IntCounter::new("s2v_images_total", "Images generated and stored")
            .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "s2v_errors_total",
                "Requests that ended in an error, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let first_image_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "s2v_first_image_seconds",
                "Time from request to the first image event",
            )
            .buckets(latency_buckets.clone()),
        )
        .expect("valid metric");
        let generation_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "s2v_generation_seconds",
                "Time from request to the done event",
            )
            .buckets(latency_buckets),
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("s2v_queue_depth", "Requests waiting for the generator")
            .expect("valid metric");
        let workers =
            IntGauge::new("s2v_workers", "Generator workers alive").expect("valid metric");
        let batches = IntCounterVec::new(
            Opts::new(
                "s2v_batches_total",
                "Forward passes, by number of images in the batch",
            ),
            &["size"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(images.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(first_image_seconds.clone()),
            Box::new(generation_seconds.clone()),
            Box::new(queue_depth.clone()),
            Box::new(workers.clone()),
            Box::new(batches.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            images,
            errors,
            first_image_seconds,
            generation_seconds,
            queue_depth,
            workers,
            batches,
            sync: std::sync::Mutex::new(()),
        }
    }
}

impl Metrics {
    /// Counts an error answered to a client, by kind: the one place the error metric is counted.
    pub fn count_error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.as_str()]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn healthz(State(state): State<SharedState>) -> impl IntoResponse {
    match state.generators.as_ref().and_then(|g| g.serving()) {
        Some(_) => (StatusCode::OK, "ok"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no generator worker"),
    }
}

pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let m = &state.metrics;
    if let Some(generators) = &state.generators {
        m.queue_depth.set(generators.queue_depth().await);
        m.workers.set(generators.workers() as i64);
        // The generators count in their own counters; bring the Prometheus counters up to them.
        let _guard = m
            .sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (i, count) in generators.batch_sizes().into_iter().enumerate() {
            let counter = m.batches.with_label_values(&[&(i + 1).to_string()]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut buffer) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string().into_bytes(),
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        buffer,
    )
}
