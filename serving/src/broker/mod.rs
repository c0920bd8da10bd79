//! Generation jobs through a NATS JetStream work queue, so that generator workers can run as separate
//! processes on other machines.
//!
//! - The front end ([`BrokerClient`]) publishes a [`Job`] on [`JOB_SUBJECT`]; the stream keeps it until a worker acknowledges it
//!   (work-queue retention, at most `capacity` waiting: more are refused, which the server answers 429).
//! - Workers ([`serve_jobs`]) pull jobs through one durable consumer. While a job runs its worker tells JetStream that it is
//!   still working; a worker that dies stops doing so, and after the consumer's ack wait the job is delivered
//!   to another worker. Noise comes from the job's seed, so the second worker makes the same images.
//! - Each image goes back on `s2v.images.<job id>` (plain NATS) as soon as its batch is done; the front end
//!   subscribed before publishing the job and ignores images it already has (a redelivered job starts over).
//!   A diffusion model's previews travel the same way, marked with the step they show.
//! - A front end whose client left publishes `s2v.cancel.<job id>`; the worker drops the rest of the job.
//! - Every second each worker announces itself, its model and its batch counts on [`HEARTBEAT_SUBJECT`]:
//!   the front end serves only while a worker is alive and takes the latent length from the announcement.

mod client;
mod worker;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};

pub use client::BrokerClient;
pub use s2v_shared::wire::{Announcement, Job};
pub use worker::{WorkerOptions, serve_jobs};

pub const STREAM: &str = "S2V_JOBS";
pub const JOB_SUBJECT: &str = "s2v.jobs";
pub const CONSUMER: &str = "s2v-workers";
pub const HEARTBEAT_SUBJECT: &str = "s2v.workers";
/// A worker not heard from for this long is taken for dead.
pub const LIVE_WINDOW: Duration = Duration::from_secs(3);
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A job that fails this many deliveries (its workers died each time) is given up.
pub(crate) const MAX_DELIVER: i64 = 5;

pub(crate) fn image_subject(job: &str) -> String {
    format!("s2v.images.{job}")
}

pub(crate) fn cancel_subject(job: &str) -> String {
    format!("s2v.cancel.{job}")
}

pub(crate) const INDEX_HEADER: &str = "S2V-Index";
pub(crate) const WIDTH_HEADER: &str = "S2V-Width";
pub(crate) const HEIGHT_HEADER: &str = "S2V-Height";
pub(crate) const ERROR_HEADER: &str = "S2V-Error";
/// On a diffusion model's preview: the step it was taken after, of how many.
pub(crate) const PREVIEW_STEP_HEADER: &str = "S2V-Preview-Step";
pub(crate) const STEPS_HEADER: &str = "S2V-Steps";

/// How long a server or worker waits for JetStream at start: a NATS server accepts connections before its
/// JetStream is ready, and the two are often started together.
const JETSTREAM_START_WAIT: Duration = Duration::from_secs(10);

/// Creates the job stream, or updates its capacity, retrying while JetStream starts and when another process
/// created the stream between this one's look and its create. Any other error (a stream of that name with a
/// configuration that cannot be changed, say) fails at once.
pub(crate) async fn job_stream(
    js: &jetstream::Context,
    capacity: Option<usize>,
) -> anyhow::Result<stream::Stream> {
    let started = Instant::now();
    loop {
        let error = match try_job_stream(js, capacity).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        if started.elapsed() >= JETSTREAM_START_WAIT {
            return Err(error);
        }
        match creation_error(&error) {
            Some(CreationError::NotReady) => {
                tracing::info!("JetStream not ready yet ({error:#}); retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // A front end and a worker started together: both found no stream and both created one, with
            // different capacities. Looking again finds the other's, which the front end then updates.
            Some(CreationError::CreatedMeanwhile) => {
                tracing::info!("the job stream was created meanwhile; opening it");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => return Err(error),
        }
    }
}

/// Why creating the stream failed, where trying again can succeed.
#[derive(Debug, PartialEq, Eq)]
enum CreationError {
    /// JetStream is not (yet) answering.
    NotReady,
    /// Another process created the stream after this one looked for it.
    CreatedMeanwhile,
}

fn creation_error(error: &anyhow::Error) -> Option<CreationError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
    let error = error.downcast_ref::<async_nats::jetstream::context::CreateStreamError>()?;
    match error.kind() {
        Kind::JetStreamUnavailable | Kind::TimedOut => Some(CreationError::NotReady),
        Kind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NAME_EXIST => {
            Some(CreationError::CreatedMeanwhile)
        }
        Kind::JetStream(api)
            if [
                ErrorCode::JETSTREAM_NOT_ENABLED,
                ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
                ErrorCode::CLUSTER_NOT_AVAILABLE,
            ]
            .contains(&api.error_code()) =>
        {
            Some(CreationError::NotReady)
        }
        _ => None,
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

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswering_jetstream_and_a_lost_creation_race_are_tried_again() {
        use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind as Kind};
        let api = |err_code: u64| {
            let error: async_nats::jetstream::Error = serde_json::from_value(
                serde_json::json!({"code": 503, "err_code": err_code, "description": "x"}),
            )
            .unwrap();
            Kind::JetStream(error)
        };
        let judged = |kind: Kind| {
            creation_error(
                &anyhow::Error::new(CreateStreamError::new(kind))
                    .context("cannot create the job stream"),
            )
        };
        use CreationError::{CreatedMeanwhile, NotReady};
        assert_eq!(judged(Kind::JetStreamUnavailable), Some(NotReady));
        assert_eq!(judged(Kind::TimedOut), Some(NotReady));
        assert_eq!(
            judged(api(10039)),
            Some(NotReady),
            "JetStream not enabled for the account"
        );
        assert_eq!(
            judged(api(10008)),
            Some(NotReady),
            "JetStream temporarily unavailable"
        );
        // "Stream name already in use with a different configuration": the create after another process's.
        assert_eq!(judged(api(10058)), Some(CreatedMeanwhile));
        assert_eq!(
            judged(api(10052)),
            None,
            "a configuration that cannot change"
        );
        assert_eq!(judged(Kind::InvalidStreamName), None);
        assert_eq!(
            creation_error(&anyhow::anyhow!("cannot open the job stream")),
            None
        );
    }
}
