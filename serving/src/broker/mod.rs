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

/// Creates the job stream, or updates its capacity, retrying while JetStream starts. Any other error (a stream
/// of that name with a configuration that cannot be changed, say) fails at once.
pub(crate) async fn job_stream(
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

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
}
