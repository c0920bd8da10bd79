//! The server's side of the broker: publishes jobs and passes their images on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use s2v_shared::wire::{Announcement, GenerationRequest, Job, ModelInfo};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{
    ERROR_HEADER, HEARTBEAT_SUBJECT, HEIGHT_HEADER, INDEX_HEADER, JOB_SUBJECT, LIVE_WINDOW,
    PREVIEW_STEP_HEADER, STEPS_HEADER, WIDTH_HEADER, cancel_subject, image_subject, job_stream,
    lock,
};
use crate::error::{GenerationError, SubmitError};
use crate::runtime::{GeneratedImage, ImageResult, PreviewStep, check_request};

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
        check_request(&request, worker.feature_dim, &worker.kind)?;
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
            .map_err(|e| SubmitError::Broker(format!("is unreachable: {e}")))?;
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
                SubmitError::Broker(format!("refused the job: {e}"))
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
                let _ = reply.send(Err(GenerationError::Disconnected));
                return;
            }
            Err(_) => {
                let _ = reply.send(Err(GenerationError::Silent(silence_limit.as_secs())));
                return;
            }
        };
        match decode_image(&message) {
            // Images of a redelivered job that we already have, or a worker's duplicate; previews of them.
            Ok(image) if image.index < next => {}
            // A preview of an image still to come.
            Ok(image) if image.preview.is_some() => {
                if reply.send(Ok(image)).is_err() {
                    let _ = client
                        .publish(cancel_subject(&job.id), Vec::new().into())
                        .await;
                    return;
                }
            }
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
                let _ = reply.send(Err(GenerationError::Malformed(format!(
                    "image {} arrived before image {next}",
                    image.index
                ))));
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

fn decode_image(message: &async_nats::Message) -> Result<GeneratedImage, GenerationError> {
    if let Some(error) = header(message, ERROR_HEADER) {
        return Err(GenerationError::Worker(error.to_string()));
    }
    let number = |name: &str| -> Result<usize, GenerationError> {
        header(message, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                GenerationError::Malformed(format!("an image lacks a valid {name} header"))
            })
    };
    let (index, width, height) = (
        number(INDEX_HEADER)?,
        number(WIDTH_HEADER)?,
        number(HEIGHT_HEADER)?,
    );
    let preview = match header(message, PREVIEW_STEP_HEADER) {
        None => None,
        Some(_) => Some(PreviewStep {
            step: number(PREVIEW_STEP_HEADER)?,
            steps: number(STEPS_HEADER)?,
        }),
    };
    if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(message.payload.len()) {
        return Err(GenerationError::Malformed(format!(
            "an image has {} bytes, not {width} x {height} x 3",
            message.payload.len()
        )));
    }
    Ok(GeneratedImage {
        index,
        width,
        height,
        rgb: message.payload.to_vec(),
        preview,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let malformed =
            |headers: &[(&str, &str)], payload| match decode_image(&message(headers, payload)) {
                Err(GenerationError::Malformed(why)) => why,
                other => panic!("not malformed: {other:?}"),
            };
        let short = malformed(&sizes, vec![7; 5]);
        assert!(short.contains("not 2 x 1 x 3"), "{short}");
        let missing = malformed(&sizes[..2], vec![7; 6]);
        assert!(missing.contains(HEIGHT_HEADER), "{missing}");
        assert_eq!(
            decode_image(&message(&[(ERROR_HEADER, "out of memory")], vec![])).unwrap_err(),
            GenerationError::Worker("out of memory".into())
        );
        // Sizes whose product overflows are refused, not multiplied.
        let huge = [
            (INDEX_HEADER, "0"),
            (WIDTH_HEADER, "18446744073709551615"),
            (HEIGHT_HEADER, "2"),
        ];
        malformed(&huge, vec![]);
        // A preview says where it was taken, in full.
        let preview = [
            sizes[0],
            sizes[1],
            sizes[2],
            (PREVIEW_STEP_HEADER, "5"),
            (STEPS_HEADER, "20"),
        ];
        let image = decode_image(&message(&preview, vec![7; 6])).unwrap();
        assert_eq!(image.preview, Some(PreviewStep { step: 5, steps: 20 }));
        assert_eq!(
            decode_image(&message(&sizes, vec![7; 6])).unwrap().preview,
            None
        );
        let half = malformed(&preview[..4], vec![7; 6]);
        assert!(half.contains(STEPS_HEADER), "{half}");
    }
}
