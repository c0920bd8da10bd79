//! A generator worker's side of the broker: takes jobs, runs them on the local generator runtime, sends each
//! image back, and announces itself every second.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use s2v_shared::wire::{Announcement, Job, ModelInfo};
use tokio::sync::mpsc::unbounded_channel;

use super::{
    CONSUMER, ERROR_HEADER, HEARTBEAT_EVERY, HEARTBEAT_SUBJECT, HEIGHT_HEADER, INDEX_HEADER,
    MAX_DELIVER, PREVIEW_STEP_HEADER, STEPS_HEADER, WIDTH_HEADER, image_subject, job_stream, lock,
};
use crate::error::SubmitError;
use crate::runtime::{GeneratedImage, GeneratorRuntime};

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
    let consumer = workers_consumer(&client, options.ack_wait).await?;
    let cancelled = listen_for_cancellations(&client).await?;
    tokio::spawn(announce(
        client.clone(),
        runtime.clone(),
        model.clone(),
        options.name.clone(),
    ));
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

/// The one durable consumer every worker pulls jobs through; the first worker creates it with its ack wait.
async fn workers_consumer(
    client: &async_nats::Client,
    ack_wait: Duration,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = job_stream(&jetstream::new(client.clone()), None).await?;
    stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
        )
        .await
        .context("cannot create the workers' consumer")
}

/// The ids of jobs whose clients left, as front ends announce them.
async fn listen_for_cancellations(
    client: &async_nats::Client,
) -> anyhow::Result<Arc<Mutex<Vec<String>>>> {
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
    Ok(cancelled)
}

/// Says every second that this worker is alive, what it serves and how it has batched.
async fn announce(
    client: async_nats::Client,
    runtime: GeneratorRuntime,
    model: ModelInfo,
    name: String,
) {
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        ticker.tick().await;
        let announcement = Announcement {
            worker: name.clone(),
            model: model.clone(),
            feature_dim: runtime.feature_dim(),
            resolution: runtime.resolution(),
            kind: runtime.kind(),
            batch_sizes: runtime
                .stats()
                .batch_sizes
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        };
        let payload = serde_json::to_vec(&announcement).expect("an announcement serialises");
        if let Err(e) = client.publish(HEARTBEAT_SUBJECT, payload.into()).await {
            tracing::warn!("cannot announce this worker: {e}");
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
                self.fail(&job, &e).await;
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
                        let finished = image.preview.is_none();
                        self.send(&subject, image).await;
                        if !finished {
                            continue;
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

    async fn send(&self, subject: &str, image: GeneratedImage) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INDEX_HEADER, image.index.to_string().as_str());
        headers.insert(WIDTH_HEADER, image.width.to_string().as_str());
        headers.insert(HEIGHT_HEADER, image.height.to_string().as_str());
        if let Some(preview) = image.preview {
            headers.insert(PREVIEW_STEP_HEADER, preview.step.to_string().as_str());
            headers.insert(STEPS_HEADER, preview.steps.to_string().as_str());
        }
        if let Err(e) = self
            .client
            .publish_with_headers(subject.to_string(), headers, image.rgb.into())
            .await
        {
            tracing::warn!("cannot send an image back: {e}");
        }
    }

    /// Whether the front end said that the job's client left.
    fn is_cancelled(&self, job: &Job) -> bool {
        lock(&self.cancelled).contains(&job.id)
    }

    async fn fail(&self, job: &Job, error: &(dyn std::fmt::Display + Sync)) {
        let mut headers = async_nats::HeaderMap::new();
        // Header values are one line.
        headers.insert(
            ERROR_HEADER,
            error.to_string().replace(['\r', '\n'], " ").as_str(),
        );
        let _ = self
            .client
            .publish_with_headers(image_subject(&job.id), headers, Vec::new().into())
            .await;
    }
}
