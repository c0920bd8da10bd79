//! Generation jobs through a NATS JetStream work queue, so that generator workers can run as separate
//! processes on other machines.
//!
//! - The front end publishes a [`Job`] on [`JOB_SUBJECT`]; the stream keeps it until a worker acknowledges it
//!   (work-queue retention, at most `capacity` waiting: more are refused, which the server answers 429).
//! - Workers pull jobs through one durable consumer. While a job runs its worker tells JetStream that it is
//!   still working; a worker that dies stops doing so, and after the consumer's ack wait the job is delivered
//!   to another worker. Noise comes from the job's seed, so the second worker makes the same images.
//! - Each image goes back on `s2v.images.<job id>` (plain NATS) as soon as its batch is done; the front end
//!   subscribed before publishing the job and ignores images it already has (a redelivered job starts over).
//! - A front end whose client left publishes `s2v.cancel.<job id>`; the worker drops the rest of the job.
//! - Every second each worker announces itself, its model and its batch counts on [`HEARTBEAT_SUBJECT`]:
//!   the front end serves only while a worker is alive and takes the latent length from the announcement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::commands::ModelInfo;
use crate::runtime::{
    GeneratedImage, GenerationRequest, GeneratorRuntime, ImageResult, SubmitError, check_request,
};

pub const STREAM: &str = "S2V_JOBS";
pub const JOB_SUBJECT: &str = "s2v.jobs";
pub const CONSUMER: &str = "s2v-workers";
pub const HEARTBEAT_SUBJECT: &str = "s2v.workers";
/// A worker not heard from for this long is taken for dead.
pub const LIVE_WINDOW: Duration = Duration::from_secs(3);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A job that fails this many deliveries (its workers died each time) is given up.
const MAX_DELIVER: i64 = 5;

fn image_subject(job: &str) -> String {
    format!("s2v.images.{job}")
}

fn cancel_subject(job: &str) -> String {
    format!("s2v.cancel.{job}")
}

const INDEX_HEADER: &str = "S2V-Index";
const WIDTH_HEADER: &str = "S2V-Width";
const HEIGHT_HEADER: &str = "S2V-Height";
const ERROR_HEADER: &str = "S2V-Error";

/// One generation as it travels through the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// The model version the front end promised the client; a worker serving another refuses the job.
    pub model: ModelInfo,
    pub request: GenerationRequest,
}

/// What a worker announces every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub worker: String,
    pub model: ModelInfo,
    pub feature_dim: usize,
    pub resolution: usize,
    /// `batch_sizes[n - 1]`: forward passes of `n` images since the worker started.
    pub batch_sizes: Vec<u64>,
}

/// How long a server or worker waits for JetStream at start: a NATS server accepts connections before its
/// JetStream is ready, and the two are often started together.
const JETSTREAM_START_WAIT: Duration = Duration::from_secs(10);

/// Creates the job stream, or updates its capacity, retrying while JetStream starts. Any other error (a stream
/// of that name with a configuration that cannot be changed, say) fails at once.
async fn job_stream(
    js: &jetstream::Context,
    capacity: Option<usize>,
) -> anyhow::Result<stream::Stream> {
    let started = Instant::now();
    loop {
        match try_job_stream(js, capacity).await {
            Ok(stream) => return Ok(stream),
            Err(e) if jetstream_not_ready(&e) && started.elapsed() < JETSTREAM_START_WAIT => {
                tracing::info!("JetStream not ready yet ({e:#}); retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether creating the stream failed because JetStream is not (yet) answering, rather than refusing it.
fn jetstream_not_ready(error: &anyhow::Error) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
    let Some(error) = error.downcast_ref::<async_nats::jetstream::context::CreateStreamError>()
    else {
        return false;
    };
    match error.kind() {
        Kind::JetStreamUnavailable | Kind::TimedOut => true,
        Kind::JetStream(api) => [
            ErrorCode::JETSTREAM_NOT_ENABLED,
            ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
            ErrorCode::CLUSTER_NOT_AVAILABLE,
        ]
        .contains(&api.error_code()),
        _ => false,
    }
}

async fn try_job_stream(
    js: &jetstream::Context,
    capacity: Option<usize>,
) -> anyhow::Result<stream::Stream> {
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![JOB_SUBJECT.to_string()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_messages: capacity.map_or(-1, |c| c as i64),
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match capacity {
        // The front end owns the capacity.
        Some(_) => {
            js.create_or_update_stream(config)
                .await
                .context("cannot create the job stream")?;
            js.get_stream(STREAM)
                .await
                .context("cannot open the job stream")
        }
        None => js
            .get_or_create_stream(config)
            .await
            .context("cannot open the job stream"),
    }
}

// --------------------------------------------------------------------------------------------------------
// Front end

/// The server's side: publishes jobs and receives their images.
#[derive(Clone)]
pub struct BrokerClient {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The job stream, kept so that reading its depth is one request.
    stream: stream::Stream,
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
    workers: Arc<Mutex<HashMap<String, (Instant, Announcement)>>>,
    /// A job that sends nothing for this long is reported failed.
    silence_limit: Duration,
}

impl BrokerClient {
    /// Connects, creates the job stream with room for `capacity` waiting jobs, and starts listening to the
    /// workers' announcements.
    pub async fn connect(url: &str, capacity: usize) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        let js = jetstream::new(client.clone());
        let stream = job_stream(&js, Some(capacity.max(1))).await?;
        let workers: Arc<Mutex<HashMap<String, (Instant, Announcement)>>> = Default::default();
        let mut heartbeats = client.subscribe(HEARTBEAT_SUBJECT).await?;
        let seen = workers.clone();
        tokio::spawn(async move {
            while let Some(message) = heartbeats.next().await {
                match serde_json::from_slice::<Announcement>(&message.payload) {
                    Ok(a) => {
                        lock(&seen).insert(a.worker.clone(), (Instant::now(), a));
                    }
                    Err(e) => tracing::warn!("ignoring a malformed worker announcement: {e}"),
                }
            }
        });
        Ok(Self {
            client,
            js,
            stream,
            capacity: capacity.max(1),
            in_flight: Default::default(),
            workers,
            silence_limit: Duration::from_secs(120),
        })
    }

    /// The newest announcement of a live worker, if any worker is alive.
    pub fn live_worker(&self) -> Option<Announcement> {
        lock(&self.workers)
            .values()
            .filter(|(seen, _)| seen.elapsed() < LIVE_WINDOW)
            .max_by_key(|(seen, _)| *seen)
            .map(|(_, a)| a.clone())
    }

    pub fn live_workers(&self) -> usize {
        lock(&self.workers)
            .values()
            .filter(|(seen, _)| seen.elapsed() < LIVE_WINDOW)
            .count()
    }

    /// Forward passes by batch size, summed over every worker ever heard from (their last counts).
    pub fn batch_sizes(&self) -> Vec<u64> {
        let workers = lock(&self.workers);
        let longest = workers
            .values()
            .map(|(_, a)| a.batch_sizes.len())
            .max()
            .unwrap_or(0);
        let mut sums = vec![0; longest];
        for (_, a) in workers.values() {
            for (sum, n) in sums.iter_mut().zip(&a.batch_sizes) {
                *sum += n;
            }
        }
        sums
    }

    /// Jobs this front end has published that have not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Jobs waiting in the broker for a worker (all front ends').
    pub async fn waiting(&self) -> anyhow::Result<u64> {
        Ok(self.stream.get_info().await?.state.messages)
    }

    /// Queues a request for the live workers' model; images arrive on the receiver in order of index.
    pub async fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<(ModelInfo, UnboundedReceiver<ImageResult>), SubmitError> {
        let worker = self.live_worker().ok_or(SubmitError::Stopped)?;
        check_request(&request, worker.feature_dim)?;
        // Count this job before looking at the limit, so that racing requests cannot both slip in.
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull);
        }
        let guard = InFlight(self.in_flight.clone());
        let job = Job {
            id: hex::encode(rand::random::<[u8; 16]>()),
            model: worker.model.clone(),
            request,
        };
        // Subscribe before publishing, so that no image can come back before we listen.
        let images = self
            .client
            .subscribe(image_subject(&job.id))
            .await
            .map_err(|e| SubmitError::Unavailable(format!("the broker is unreachable: {e}")))?;
        let payload = serde_json::to_vec(&job).expect("a job serialises");
        let published = async {
            self.js
                .publish(JOB_SUBJECT, payload.into())
                .await?
                .await
                .map(|_| ())
        }
        .await;
        if let Err(e) = published {
            // With discard-new, a full stream refuses the job; anything else means the broker is in trouble.
            return Err(if e.to_string().contains("maximum messages") {
                SubmitError::QueueFull
            } else {
                SubmitError::Unavailable(format!("the broker refused the job: {e}"))
            });
        }
        let (reply, receiver) = unbounded_channel();
        tokio::spawn(forward_images(
            self.client.clone(),
            job,
            images,
            reply,
            self.silence_limit,
            guard,
        ));
        Ok((worker.model, receiver))
    }
}

/// Decrements the in-flight count when a job's forwarding ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Passes a job's images on in order, once each, until all have come, the client leaves (then the workers
/// are told to stop) or the job falls silent.
async fn forward_images(
    client: async_nats::Client,
    job: Job,
    mut images: async_nats::Subscriber,
    reply: UnboundedSender<ImageResult>,
    silence_limit: Duration,
    _in_flight: InFlight,
) {
    let mut next = 0;
    while next < job.request.count {
        let message = tokio::select! {
            message = tokio::time::timeout(silence_limit, images.next()) => message,
            () = reply.closed() => {
                let _ = client.publish(cancel_subject(&job.id), Vec::new().into()).await;
                return;
            }
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => {
                let _ = reply.send(Err("the broker connection closed".into()));
                return;
            }
            Err(_) => {
                let _ = reply.send(Err(format!(
                    "no worker answered for {} s",
                    silence_limit.as_secs()
                )));
                return;
            }
        };
        match decode_image(&message) {
            // Images of a redelivered job that we already have, or a worker's duplicate.
            Ok(image) if image.index < next => {}
            Ok(image) if image.index == next => {
                next += 1;
                if reply.send(Ok(image)).is_err() {
                    let _ = client
                        .publish(cancel_subject(&job.id), Vec::new().into())
                        .await;
                    return;
                }
            }
            // A gap means a worker skipped an image, which they never do; say so rather than hang.
            Ok(image) => {
                let _ = reply.send(Err(format!(
                    "image {} arrived before image {next}",
                    image.index
                )));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
    }
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

fn decode_image(message: &async_nats::Message) -> Result<GeneratedImage, String> {
    if let Some(error) = header(message, ERROR_HEADER) {
        return Err(format!("the worker failed: {error}"));
    }
    let number = |name: &str| -> Result<usize, String> {
        header(message, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("a worker's image lacks a valid {name} header"))
    };
    let (index, width, height) = (
        number(INDEX_HEADER)?,
        number(WIDTH_HEADER)?,
        number(HEIGHT_HEADER)?,
    );
    if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(message.payload.len()) {
        return Err(format!(
            "a worker's image has {} bytes, not {width} x {height} x 3",
            message.payload.len()
        ));
    }
    Ok(GeneratedImage {
        index,
        width,
        height,
        rgb: message.payload.to_vec(),
    })
}

// --------------------------------------------------------------------------------------------------------
// Worker

/// How a worker process takes jobs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub url: String,
    /// Its name in announcements (unique per process).
    pub name: String,
    /// Jobs it runs at once; the runtime batches their images together.
    pub jobs: usize,
    /// How long JetStream waits without word from a worker before giving its job to another. Set by the
    /// first worker that creates the consumer.
    pub ack_wait: Duration,
}

/// Serves jobs from the broker with `runtime` until the connection fails.
pub async fn serve_jobs(
    runtime: GeneratorRuntime,
    model: ModelInfo,
    options: WorkerOptions,
) -> anyhow::Result<()> {
    let client = async_nats::connect(&options.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", options.url))?;
    let js = jetstream::new(client.clone());
    let stream = job_stream(&js, None).await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
        )
        .await
        .context("cannot create the workers' consumer")?;

    let cancelled: Arc<Mutex<Vec<String>>> = Default::default();
    let mut cancels = client.subscribe("s2v.cancel.*").await?;
    let noted = cancelled.clone();
    tokio::spawn(async move {
        while let Some(message) = cancels.next().await {
            if let Some(id) = message.subject.strip_prefix("s2v.cancel.") {
                let mut noted = lock(&noted);
                // Only recent cancellations matter: a job is cancelled while it runs.
                if noted.len() >= 1024 {
                    noted.drain(..512);
                }
                noted.push(id.to_string());
            }
        }
    });

    let announcer = client.clone();
    let announce_runtime = runtime.clone();
    let announce_model = model.clone();
    let name = options.name.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            ticker.tick().await;
            let announcement = Announcement {
                worker: name.clone(),
                model: announce_model.clone(),
                feature_dim: announce_runtime.feature_dim(),
                resolution: announce_runtime.resolution(),
                batch_sizes: announce_runtime
                    .stats()
                    .batch_sizes
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect(),
            };
            let payload = serde_json::to_vec(&announcement).expect("an announcement serialises");
            if let Err(e) = announcer.publish(HEARTBEAT_SUBJECT, payload.into()).await {
                tracing::warn!("cannot announce this worker: {e}");
            }
        }
    });

    tracing::info!(worker = %options.name, model = %model.id, "taking jobs from {}", options.url);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
    loop {
        let permit = slots.clone().acquire_owned().await?;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .context("cannot pull jobs")?;
        match batch.next().await {
            Some(Ok(message)) => {
                let worker = JobRunner {
                    client: client.clone(),
                    runtime: runtime.clone(),
                    model: model.clone(),
                    cancelled: cancelled.clone(),
                    progress_every: options.ack_wait / 3,
                };
                tokio::spawn(async move {
                    worker.run(message).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => tracing::warn!("pulling a job failed: {e}"),
            None => {}
        }
    }
}

struct JobRunner {
    client: async_nats::Client,
    runtime: GeneratorRuntime,
    model: ModelInfo,
    cancelled: Arc<Mutex<Vec<String>>>,
    progress_every: Duration,
}

impl JobRunner {
    async fn run(self, message: jetstream::Message) {
        let job: Job = match serde_json::from_slice(&message.payload) {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!("dropping a malformed job: {e}");
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                return;
            }
        };
        if job.model != self.model {
            self.fail(
                &job,
                &format!(
                    "the job asks for model {} {}, this worker serves {} {}",
                    job.model.id, job.model.version, self.model.id, self.model.version
                ),
            )
            .await;
            let _ = message.ack_with(jetstream::AckKind::Term).await;
            return;
        }
        let (reply, mut images) = unbounded_channel();
        match self.runtime.submit(job.request.clone(), reply) {
            Ok(()) => {}
            // This worker is busy: hand the job back for another (or this one, a moment later).
            Err(SubmitError::QueueFull) => {
                let _ = message
                    .ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(50))))
                    .await;
                return;
            }
            Err(e) => {
                self.fail(&job, &e.to_string()).await;
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                return;
            }
        }
        tracing::info!("started job {}", job.id);
        let subject = image_subject(&job.id);
        let mut ticker = tokio::time::interval(self.progress_every.max(Duration::from_millis(100)));
        let mut sent = 0;
        while sent < job.request.count {
            tokio::select! {
                image = images.recv() => match image {
                    Some(Ok(image)) => {
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert(INDEX_HEADER, image.index.to_string().as_str());
                        headers.insert(WIDTH_HEADER, image.width.to_string().as_str());
                        headers.insert(HEIGHT_HEADER, image.height.to_string().as_str());
                        if let Err(e) = self
                            .client
                            .publish_with_headers(subject.clone(), headers, image.rgb.into())
                            .await
                        {
                            tracing::warn!("cannot send an image back: {e}");
                        }
                        sent += 1;
                        if sent < job.request.count && self.is_cancelled(&job) {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        self.fail(&job, &e).await;
                        break;
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    // Still working: keep JetStream from handing the job to another worker.
                    let _ = message.ack_with(jetstream::AckKind::Progress).await;
                    if self.is_cancelled(&job) {
                        break;
                    }
                }
            }
        }
        if sent < job.request.count && self.is_cancelled(&job) {
            tracing::info!(
                "cancelled job {} after {sent} of {} images",
                job.id,
                job.request.count
            );
        }
        // Dropping the receiver tells the runtime to skip the rest of a job cut short.
        drop(images);
        let _ = self.client.flush().await;
        match message.ack().await {
            Ok(()) => tracing::info!("finished job {}", job.id),
            Err(e) => tracing::warn!("cannot acknowledge job {}: {e}", job.id),
        }
    }

    /// Whether the front end said that the job's client left.
    fn is_cancelled(&self, job: &Job) -> bool {
        lock(&self.cancelled).contains(&job.id)
    }

    async fn fail(&self, job: &Job, error: &str) {
        let mut headers = async_nats::HeaderMap::new();
        // Header values are one line.
        headers.insert(ERROR_HEADER, error.replace(['\r', '\n'], " ").as_str());
        let _ = self
            .client
            .publish_with_headers(image_subject(&job.id), headers, Vec::new().into())
            .await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unanswering_jetstream_is_waited_for() {
        use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind as Kind};
        let api = |err_code: u64| {
            let error: async_nats::jetstream::Error = serde_json::from_value(
                serde_json::json!({"code": 503, "err_code": err_code, "description": "x"}),
            )
            .unwrap();
            Kind::JetStream(error)
        };
        let judged = |kind: Kind| {
            jetstream_not_ready(
                &anyhow::Error::new(CreateStreamError::new(kind))
                    .context("cannot create the job stream"),
            )
        };
        assert!(judged(Kind::JetStreamUnavailable));
        assert!(judged(Kind::TimedOut));
        assert!(judged(api(10039)), "JetStream not enabled for the account");
        assert!(judged(api(10008)), "JetStream temporarily unavailable");
        assert!(
            !judged(api(10058)),
            "a stream of that name with another configuration"
        );
        assert!(!judged(Kind::InvalidStreamName));
        assert!(!jetstream_not_ready(&anyhow::anyhow!(
            "cannot open the job stream"
        )));
    }

    fn message(headers: &[(&str, &str)], payload: Vec<u8>) -> async_nats::Message {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        async_nats::Message {
            subject: "s2v.images.x".into(),
            reply: None,
            length: payload.len(),
            payload: payload.into(),
            headers: Some(map),
            status: None,
            description: None,
        }
    }

    #[test]
    fn images_decode_from_their_headers_and_bad_ones_are_errors() {
        let sizes = [
            (INDEX_HEADER, "3"),
            (WIDTH_HEADER, "2"),
            (HEIGHT_HEADER, "1"),
        ];
        let image = decode_image(&message(&sizes, vec![7; 6])).unwrap();
        assert_eq!((image.index, image.width, image.height), (3, 2, 1));
        assert_eq!(image.rgb, vec![7; 6]);

        let short = decode_image(&message(&sizes, vec![7; 5])).unwrap_err();
        assert!(short.contains("not 2 x 1 x 3"), "{short}");
        let missing = decode_image(&message(&sizes[..2], vec![7; 6])).unwrap_err();
        assert!(missing.contains(HEIGHT_HEADER), "{missing}");
        let failed =
            decode_image(&message(&[(ERROR_HEADER, "out of memory")], vec![])).unwrap_err();
        assert!(failed.contains("out of memory"), "{failed}");
        // Sizes whose product overflows are refused, not multiplied.
        let huge = [
            (INDEX_HEADER, "0"),
            (WIDTH_HEADER, "18446744073709551615"),
            (HEIGHT_HEADER, "2"),
        ];
        assert!(decode_image(&message(&huge, vec![])).is_err());
    }

    #[test]
    fn jobs_and_announcements_round_trip_as_json() {
        let job = Job {
            id: "abc".into(),
            model: ModelInfo {
                id: "m".into(),
                version: "v".into(),
            },
            request: GenerationRequest {
                latent: vec![0.5, -1.0],
                seed: 9,
                count: 2,
                truncation: Some(0.5),
            },
        };
        let back: Job = serde_json::from_slice(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
