//! Where generation requests go: the generator runtime in this process (the default), or worker processes
//! behind a NATS JetStream queue (`--nats`).

use s2v_serving::broker::BrokerClient;
use s2v_serving::{GeneratorRuntime, ImageResult, SubmitError};
use s2v_shared::wire::{GenerationRequest, ModelInfo, ModelKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

pub enum Generators {
    Local {
        runtime: GeneratorRuntime,
        model: ModelInfo,
    },
    Broker(Box<BrokerClient>),
}

/// What is being served right now.
pub struct Serving {
    pub model: ModelInfo,
    /// The length of the latents the generator is conditioned on.
    pub feature_dim: usize,
    /// Side of the square pictures.
    pub resolution: usize,
    pub kind: ModelKind,
}

impl Generators {
    /// The model served, or `None` while no worker is alive.
    pub fn serving(&self) -> Option<Serving> {
        match self {
            Generators::Local { runtime, model } => Some(Serving {
                model: model.clone(),
                feature_dim: runtime.feature_dim(),
                resolution: runtime.resolution(),
                kind: runtime.kind(),
            }),
            Generators::Broker(broker) => broker.live_worker().map(|w| Serving {
                model: w.model,
                feature_dim: w.feature_dim,
                resolution: w.resolution,
                kind: w.kind,
            }),
        }
    }

    /// Queues a request; its images arrive on the receiver in order. Also says which model makes them.
    pub async fn submit(
        &self,
        request: GenerationRequest,
    ) -> Result<(ModelInfo, UnboundedReceiver<ImageResult>), SubmitError> {
        match self {
            Generators::Local { runtime, model } => {
                let (reply, receiver) = unbounded_channel();
                runtime.submit(request, reply)?;
                Ok((model.clone(), receiver))
            }
            Generators::Broker(broker) => broker.submit(request).await,
        }
    }

    /// Forward passes by number of images (`[n - 1]` counts batches of `n`), over all workers.
    pub fn batch_sizes(&self) -> Vec<u64> {
        match self {
            Generators::Local { runtime, .. } => runtime
                .stats()
                .batch_sizes
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .collect(),
            Generators::Broker(broker) => broker.batch_sizes(),
        }
    }

    /// Requests waiting for a generator.
    pub async fn queue_depth(&self) -> i64 {
        match self {
            Generators::Local { runtime, .. } => runtime
                .stats()
                .queued
                .load(std::sync::atomic::Ordering::Relaxed)
                as i64,
            Generators::Broker(broker) => match broker.waiting().await {
                Ok(n) => n as i64,
                Err(e) => {
                    tracing::warn!("cannot read the job queue's depth: {e}");
                    -1
                }
            },
        }
    }

    /// Generator workers alive: the runtime thread here, or those heard from over the broker.
    pub fn workers(&self) -> usize {
        match self {
            Generators::Local { .. } => 1,
            Generators::Broker(broker) => broker.live_workers(),
        }
    }
}
