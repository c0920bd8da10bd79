//! The generator runtime: one thread owns the generator on its device and serves a bounded queue of requests,
//! batching the images of whatever requests are waiting (collected for a few milliseconds, up to a batch
//! limit). Each image goes back to its request as soon as its batch is done; a request whose receiver is gone
//! (the client left) is dropped from later batches. A GAN's thread is here; a diffusion model's, which
//! batches UNet calls rather than whole pictures, is in [`crate::diffusion`]. The handle, the queue and the
//! checks are the same for both.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use burn::prelude::*;
use s2v_models::generator::sample_noise;
use s2v_models::unclip::pipeline::seeded_noise;
use s2v_models::{Generator, NetworkModule};
use s2v_shared::wire::{DiffusionControls, GenerationRequest, ModelKind};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{GenerationError, InvalidRequest, SubmitError};

/// How the runtime queues and batches.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Requests waiting beyond those being served; more are refused (the caller answers 429).
    pub queue_capacity: usize,
    /// Images per forward pass at most.
    pub max_batch: usize,
    /// How long the runtime waits for more requests before running a batch that is not full.
    pub batch_wait: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 64,
            max_batch: 8,
            batch_wait: Duration::from_millis(5),
        }
    }
}

/// One finished image, or a preview of one: `rgb` is `height x width x 3`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedImage {
    pub index: usize,
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    /// `Some` for a diffusion model's preview (a small picture of what it predicts so far), `None` for the
    /// finished image.
    pub preview: Option<PreviewStep>,
}

/// Where a preview was taken: after `step` of `steps` denoising steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewStep {
    pub step: usize,
    pub steps: usize,
}

/// What a request's receiver gets: each image as it is made, or the error that ended the request.
pub type ImageResult = Result<GeneratedImage, GenerationError>;

/// Counters the server exports as metrics.
#[derive(Debug)]
pub struct RuntimeStats {
    /// Requests waiting for the generator thread.
    pub queued: AtomicUsize,
    /// Images skipped because their client had left.
    pub dropped_images: AtomicU64,
    /// `batch_sizes[n - 1]` counts the forward passes of `n` images.
    pub batch_sizes: Vec<AtomicU64>,
}

impl RuntimeStats {
    pub(crate) fn new(max_batch: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            dropped_images: AtomicU64::new(0),
            batch_sizes: (0..max_batch.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one forward pass of `images` images (the last counter takes any larger pass).
    pub(crate) fn count_batch(&self, images: usize) {
        let slot = images.clamp(1, self.batch_sizes.len()) - 1;
        self.batch_sizes[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Forward passes and the images they made, over all batch sizes.
    pub fn batch_totals(&self) -> (u64, u64) {
        self.batch_sizes
            .iter()
            .enumerate()
            .fold((0, 0), |(batches, images), (i, count)| {
                let count = count.load(Ordering::Relaxed);
                (batches + count, images + count * (i as u64 + 1))
            })
    }
}

pub(crate) struct Job {
    pub(crate) request: GenerationRequest,
    /// Drawn from the seed when the request is submitted (off the generator thread): `count x dim_z` values
    /// for a GAN; for a diffusion model every image's starting latents, then every image's embedding noise.
    pub(crate) noise: Vec<f32>,
    pub(crate) reply: UnboundedSender<ImageResult>,
}

/// Whether a diffusion model's scheduler can take a number of steps.
pub(crate) type StepsCheck = Arc<dyn Fn(usize) -> Result<(), String> + Send + Sync>;

/// The kind of network a runtime serves, with what drawing a request's noise and checking its steps need.
#[derive(Clone)]
enum Served {
    Gan {
        dim_z: usize,
    },
    Diffusion {
        controls: DiffusionControls,
        latent_shape: [usize; 3],
        steps_check: StepsCheck,
    },
}

impl Served {
    fn kind(&self) -> ModelKind {
        match self {
            Self::Gan { .. } => ModelKind::Gan,
            Self::Diffusion { controls, .. } => ModelKind::Diffusion(*controls),
        }
    }

    /// Whether the scheduler takes the request's number of steps (the checks common to every front end are
    /// [`check_request`]'s).
    fn check_steps(&self, request: &GenerationRequest) -> Result<(), InvalidRequest> {
        match (self, request.steps) {
            (Self::Diffusion { steps_check, .. }, Some(steps)) => {
                steps_check(steps).map_err(InvalidRequest::Steps)
            }
            _ => Ok(()),
        }
    }

    /// The request's noise, drawn from its seed: `count x dim_z` values for a GAN; for a diffusion model every
    /// image's starting latents, then every image's embedding noise (`feature_dim` each).
    fn draw_noise(
        &self,
        request: &GenerationRequest,
        feature_dim: usize,
    ) -> Result<Vec<f32>, InvalidRequest> {
        match *self {
            Self::Gan { dim_z } => Ok(sample_noise(
                request.seed,
                request.count,
                dim_z,
                request.truncation,
            )?),
            Self::Diffusion { latent_shape, .. } => {
                let (mut latents, image_noise) =
                    seeded_noise(request.seed, request.count, latent_shape, feature_dim);
                latents.extend(image_noise);
                Ok(latents)
            }
        }
    }
}

/// A handle to the runtime thread; cheap to clone.
#[derive(Clone)]
pub struct GeneratorRuntime {
    sender: SyncSender<Job>,
    stats: Arc<RuntimeStats>,
    feature_dim: usize,
    resolution: usize,
    served: Served,
}

impl GeneratorRuntime {
    /// Moves the generator onto a new thread and starts serving.
    pub fn start<B: Backend>(
        generator: Generator<B>,
        device: B::Device,
        config: RuntimeConfig,
    ) -> Self {
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let stats = Arc::new(RuntimeStats::new(config.max_batch));
        let model_config = generator.config();
        let runtime = Self {
            sender,
            stats: stats.clone(),
            feature_dim: model_config.feature_dim,
            resolution: model_config.resolution(),
            served: Served::Gan {
                dim_z: model_config.dim_z(),
            },
        };
        std::thread::Builder::new()
            .name("s2v-generator".into())
            .spawn(move || serve(generator, device, receiver, config, stats))
            .expect("the OS can start a thread");
        runtime
    }

    /// A handle for a diffusion model's thread (started by [`crate::diffusion`]).
    pub(crate) fn for_diffusion(
        config: &RuntimeConfig,
        shape: crate::diffusion::DiffusionShape,
        steps_check: StepsCheck,
    ) -> (Self, Receiver<Job>, Arc<RuntimeStats>) {
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let stats = Arc::new(RuntimeStats::new(config.max_batch));
        let runtime = Self {
            sender,
            stats: stats.clone(),
            feature_dim: shape.embedding_width,
            resolution: shape.resolution,
            served: Served::Diffusion {
                controls: shape.controls,
                latent_shape: shape.latent_shape,
                steps_check,
            },
        };
        (runtime, receiver, stats)
    }

    /// The network's kind and the controls a request may set.
    pub fn kind(&self) -> ModelKind {
        self.served.kind()
    }

    pub fn stats(&self) -> &RuntimeStats {
        &self.stats
    }

    /// Length of the latents this generator is conditioned on (2048 for the paper's, 512 for the default).
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    pub fn resolution(&self) -> usize {
        self.resolution
    }

    /// Queues a request; images arrive on `reply` in order of index. Never blocks.
    pub fn submit(
        &self,
        request: GenerationRequest,
        reply: UnboundedSender<ImageResult>,
    ) -> Result<(), SubmitError> {
        check_request(&request, self.feature_dim, &self.served.kind())?;
        self.served.check_steps(&request)?;
        let noise = self.served.draw_noise(&request, self.feature_dim)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job {
            request,
            noise,
            reply,
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }
}

/// Whether a generator of `kind` conditioned on `feature_dim`-long latents can serve `request`: the checks
/// every front end makes before queueing, locally or through the broker. (Whether the scheduler takes the
/// number of steps is checked where the model is.)
pub fn check_request(
    request: &GenerationRequest,
    feature_dim: usize,
    kind: &ModelKind,
) -> Result<(), InvalidRequest> {
    if request.latent.len() != feature_dim {
        return Err(InvalidRequest::LatentLength {
            expected: feature_dim,
            found: request.latent.len(),
        });
    }
    if request.latent.iter().any(|v| !v.is_finite()) || request.latent.iter().all(|v| *v == 0.0) {
        return Err(InvalidRequest::LatentValues);
    }
    if request.count == 0 {
        return Err(InvalidRequest::NoImages);
    }
    match kind {
        ModelKind::Gan => {
            if request.steps.is_some() || request.guidance.is_some() {
                return Err(InvalidRequest::NotOffered("steps and guidance"));
            }
            Ok(s2v_models::generator::check_truncation(request.truncation)?)
        }
        ModelKind::Diffusion(controls) => {
            if request.truncation.is_some() {
                return Err(InvalidRequest::NotOffered("truncation"));
            }
            if let Some(steps) = request.steps
                && !(1..=controls.max_steps).contains(&steps)
            {
                return Err(InvalidRequest::Steps(format!(
                    "steps must be between 1 and {}",
                    controls.max_steps
                )));
            }
            match request.guidance {
                Some(g) if !(g.is_finite() && (0.0..=controls.max_guidance).contains(&g)) => {
                    Err(InvalidRequest::Guidance(controls.max_guidance))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Loads a generator (a checkpoint, or the embedded default model's when `None`) on the chosen device and
/// starts a runtime for it.
pub struct StartRuntime {
    pub checkpoint: Option<std::path::PathBuf>,
    pub config: RuntimeConfig,
}

impl crate::device::OnBackend for StartRuntime {
    type Output = GeneratorRuntime;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<GeneratorRuntime> {
        let generator: Generator<B> =
            crate::networks::load_network(self.checkpoint.as_deref(), &device)?;
        Ok(GeneratorRuntime::start(generator, device, self.config))
    }
}

/// One image still to make.
struct Pending {
    job: Arc<Job>,
    index: usize,
}

fn serve<B: Backend>(
    generator: Generator<B>,
    device: B::Device,
    receiver: Receiver<Job>,
    config: RuntimeConfig,
    stats: Arc<RuntimeStats>,
) {
    let dim_z = generator.config.dim_z();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let enqueue = |pending: &mut VecDeque<Pending>, job: Job| {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        let job = Arc::new(job);
        pending.extend((0..job.request.count).map(|index| Pending {
            job: job.clone(),
            index,
        }));
    };
    loop {
        if pending.is_empty() {
            match receiver.recv() {
                Ok(job) => enqueue(&mut pending, job),
                Err(_) => return, // every handle dropped: shut down
            }
        }
        // Gather more requests for a moment, unless a batch is already full.
        let deadline = Instant::now() + config.batch_wait;
        let max_batch = config.max_batch.max(1);
        while pending.len() < max_batch {
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => enqueue(&mut pending, job),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut batch = Vec::with_capacity(max_batch);
        while batch.len() < max_batch {
            let Some(item) = pending.pop_front() else {
                break;
            };
            if item.job.reply.is_closed() {
                stats.dropped_images.fetch_add(1, Ordering::Relaxed);
            } else {
                batch.push(item);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let images = run_batch(&generator, &device, &batch, dim_z);
        stats.count_batch(batch.len());
        match images {
            Ok(images) => {
                for (item, image) in batch.iter().zip(images) {
                    // A closed receiver only means the client left.
                    let _ = item.job.reply.send(Ok(GeneratedImage {
                        index: item.index,
                        ..image
                    }));
                }
            }
            Err(error) => {
                for item in &batch {
                    let _ = item.job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

fn run_batch<B: Backend>(
    generator: &Generator<B>,
    device: &B::Device,
    batch: &[Pending],
    dim_z: usize,
) -> Result<Vec<GeneratedImage>, GenerationError> {
    let n = batch.len();
    let feature_dim = generator.config.feature_dim;
    let z: Vec<f32> = batch
        .iter()
        .flat_map(|p| {
            p.job.noise[p.index * dim_z..(p.index + 1) * dim_z]
                .iter()
                .copied()
        })
        .collect();
    let f: Vec<f32> = batch
        .iter()
        .flat_map(|p| p.job.request.latent.iter().copied())
        .collect();
    let out = generator.forward(
        Tensor::from_data(TensorData::new(z, [n, dim_z]), device),
        Tensor::from_data(TensorData::new(f, [n, feature_dim]), device),
    );
    let [_, _, h, w] = out.dims();
    let values = out
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| GenerationError::Backend(format!("{e:?}")))?;
    Ok(values
        .chunks(3 * h * w)
        .map(|chw| GeneratedImage {
            index: 0,
            width: w,
            height: h,
            rgb: crate::pictures::to_rgb8(chw, h, w),
            preview: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use s2v_models::GeneratorConfig;
    use tokio::sync::mpsc::unbounded_channel;

    fn tiny_runtime(config: RuntimeConfig) -> GeneratorRuntime {
        let device = Default::default();
        let generator =
            Generator::<Flex>::init(&GeneratorConfig::biggan(2, 64, 120, 8, &[32]), &device)
                .unwrap();
        GeneratorRuntime::start(generator, device, config)
    }

    fn latent(seed: u32) -> Vec<f32> {
        (0..2048)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0)
            .collect()
    }

    fn collect(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<ImageResult>,
        count: usize,
    ) -> Vec<GeneratedImage> {
        (0..count)
            .map(|_| rx.blocking_recv().expect("an image").expect("no error"))
            .collect()
    }

    #[test]
    fn images_stream_back_in_order_and_are_deterministic_across_batches() {
        let runtime = tiny_runtime(RuntimeConfig {
            queue_capacity: 8,
            max_batch: 3,
            batch_wait: Duration::from_millis(20),
        });
        let request = GenerationRequest {
            latent: latent(1),
            seed: 42,
            count: 4,
            truncation: None,
            steps: None,
            guidance: None,
        };
        let (tx, rx) = unbounded_channel();
        runtime.submit(request.clone(), tx).unwrap();
        let alone = collect(rx, 4);
        assert_eq!(
            alone.iter().map(|i| i.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            (alone[0].width, alone[0].height, alone[0].rgb.len()),
            (64, 64, 64 * 64 * 3)
        );
        assert_ne!(
            alone[0].rgb, alone[1].rgb,
            "different noise, different images"
        );

        // The same request again, now batched together with another one: the same pictures. The CPU kernels
        // may sum in another order for another batch shape (differences of about 1e-8 before quantising),
        // so a channel value may land one step away.
        let (tx_other, rx_other) = unbounded_channel();
        let (tx, rx) = unbounded_channel();
        runtime
            .submit(
                GenerationRequest {
                    latent: latent(2),
                    seed: 7,
                    count: 2,
                    truncation: Some(0.5),
                    steps: None,
                    guidance: None,
                },
                tx_other,
            )
            .unwrap();
        runtime.submit(request, tx).unwrap();
        let other = collect(rx_other, 2);
        let batched = collect(rx, 4);
        assert_eq!(batched.len(), alone.len());
        for (a, b) in alone.iter().zip(&batched) {
            assert_eq!((a.index, a.width, a.height), (b.index, b.width, b.height));
            let largest = a.rgb.iter().zip(&b.rgb).map(|(x, y)| x.abs_diff(*y)).max();
            assert!(
                largest <= Some(1),
                "image {} differs by {largest:?}",
                a.index
            );
        }
        assert_eq!(other.len(), 2);
        let stats = runtime.stats();
        let (batches, images) = stats.batch_totals();
        assert!(images > batches, "batches hold several images");
    }

    #[test]
    fn a_full_queue_refuses_and_a_gone_client_is_dropped() {
        let runtime = tiny_runtime(RuntimeConfig {
            queue_capacity: 1,
            max_batch: 1,
            batch_wait: Duration::ZERO,
        });
        let mut receivers = Vec::new();
        let mut refused = 0;
        for seed in 0..6 {
            let (tx, rx) = unbounded_channel();
            match runtime.submit(
                GenerationRequest {
                    latent: latent(3),
                    seed,
                    count: 3,
                    truncation: None,
                    steps: None,
                    guidance: None,
                },
                tx,
            ) {
                Ok(()) => receivers.push(rx),
                Err(SubmitError::QueueFull) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            refused > 0,
            "a queue of one must refuse some of six requests"
        );
        // Leave: drop every receiver; the runtime drops their remaining images.
        drop(receivers);
        let (tx, rx) = unbounded_channel();
        while runtime
            .submit(
                GenerationRequest {
                    latent: latent(4),
                    seed: 1,
                    count: 1,
                    truncation: None,
                    steps: None,
                    guidance: None,
                },
                tx.clone(),
            )
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(collect(rx, 1).len(), 1);
        assert!(runtime.stats().dropped_images.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn invalid_requests_are_refused() {
        let runtime = tiny_runtime(RuntimeConfig::default());
        let (tx, _rx) = unbounded_channel();
        let bad = |latent: Vec<f32>, count| GenerationRequest {
            latent,
            seed: 0,
            count,
            truncation: None,
            steps: None,
            guidance: None,
        };
        let refused = |request| match runtime.submit(request, tx.clone()) {
            Err(SubmitError::Invalid(why)) => why,
            other => panic!("not refused as invalid: {other:?}"),
        };
        assert_eq!(
            refused(bad(vec![1.0; 10], 1)),
            InvalidRequest::LatentLength {
                expected: 2048,
                found: 10
            }
        );
        assert_eq!(
            refused(bad(vec![f32::NAN; 2048], 1)),
            InvalidRequest::LatentValues
        );
        assert_eq!(
            refused(bad(vec![0.0; 2048], 1)),
            InvalidRequest::LatentValues
        );
        assert_eq!(refused(bad(latent(1), 0)), InvalidRequest::NoImages);
        assert!(matches!(
            refused(GenerationRequest {
                truncation: Some(0.0),
                ..bad(latent(1), 1)
            }),
            InvalidRequest::Truncation(_)
        ));
        assert_eq!(
            refused(GenerationRequest {
                steps: Some(20),
                ..bad(latent(1), 1)
            }),
            InvalidRequest::NotOffered("steps and guidance")
        );
    }
}
