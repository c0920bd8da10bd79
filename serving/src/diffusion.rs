//! A diffusion model's runtime thread: requests are denoised together, one UNet call for every picture in
//! flight, whatever step each has reached (continuous batching, as LLM servers batch tokens). A request that
//! arrives while others denoise joins the next call instead of waiting for them to finish. Every few steps
//! each picture's predicted clean image goes back as a small preview; the finished image follows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use burn::prelude::*;
use s2v_models::unclip::convert::ConvertedUnclip;
use s2v_models::unclip::pipeline::{Denoising, Sampling, UnclipPipeline};
use s2v_models::unclip::schedulers::{Scheduler, SchedulerKind};
use s2v_shared::wire::DiffusionControls;

use crate::error::GenerationError;
use crate::runtime::{
    GeneratedImage, GeneratorRuntime, Job, PreviewStep, RuntimeConfig, RuntimeStats, StepsCheck,
};

/// Side, in pixels, that previews are shrunk to at most: a preview shows the picture taking shape, and the
/// stream should stay light.
pub const PREVIEW_SIDE: usize = 128;

/// The controls requests get when they set none: the paper's sampling, a preview every five steps.
pub const DEFAULT_CONTROLS: DiffusionControls = DiffusionControls {
    steps: 20,
    max_steps: 100,
    guidance: 10.0,
    max_guidance: 30.0,
    preview_every: 5,
};

/// The diffusion model's defaults on the command line, shared by `s2v-server` and `s2v worker` (each has an
/// `--unclip DIR` flag these require).
#[derive(Debug, Clone, clap::Args)]
pub struct DiffusionArgs {
    /// The diffusion model's denoising steps when a request sets none.
    #[arg(long, default_value_t = DEFAULT_CONTROLS.steps, requires = "unclip")]
    pub steps: usize,
    /// The diffusion model's guidance when a request sets none.
    #[arg(long, default_value_t = DEFAULT_CONTROLS.guidance, requires = "unclip")]
    pub guidance: f32,
    /// A preview of each picture after every this many steps (0: none).
    #[arg(long, default_value_t = DEFAULT_CONTROLS.preview_every, requires = "unclip")]
    pub preview_every: usize,
}

impl DiffusionArgs {
    /// Starts a runtime for the converted folder `model` on `device`, with the model it records images under.
    pub fn start(
        &self,
        model: &std::path::Path,
        device: crate::device::DeviceKind,
        config: RuntimeConfig,
    ) -> anyhow::Result<(GeneratorRuntime, s2v_shared::wire::ModelInfo)> {
        let model = ConvertedUnclip::open(model)?;
        let info = crate::networks::diffusion_model_info(&model);
        let job = StartDiffusionRuntime {
            model,
            config,
            controls: DiffusionControls {
                steps: self.steps,
                guidance: self.guidance,
                preview_every: self.preview_every,
                ..DEFAULT_CONTROLS
            },
            scheduler: SchedulerKind::Pndm,
        };
        let runtime = crate::device::dispatch(device, job)?;
        Ok((runtime, info))
    }
}

/// What the handle needs to know of the model.
pub(crate) struct DiffusionShape {
    pub embedding_width: usize,
    pub latent_shape: [usize; 3],
    pub resolution: usize,
    pub controls: DiffusionControls,
}

/// Loads a converted Stable unCLIP folder (`s2v convert-unclip`) on the chosen device and starts a runtime.
pub struct StartDiffusionRuntime {
    pub model: ConvertedUnclip,
    pub config: RuntimeConfig,
    pub controls: DiffusionControls,
    pub scheduler: SchedulerKind,
}

impl crate::device::OnBackend for StartDiffusionRuntime {
    type Output = GeneratorRuntime;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<GeneratorRuntime> {
        use anyhow::Context;
        let manifest = &self.model.manifest;
        let pipeline = self.model.load::<B>(&device).with_context(|| {
            format!(
                "cannot load the diffusion model {}",
                self.model.dir.display()
            )
        })?;
        let shape = DiffusionShape {
            embedding_width: manifest.embedding_width,
            latent_shape: [
                manifest.latent_channels,
                manifest.sample_size,
                manifest.sample_size,
            ],
            resolution: manifest.sample_size * manifest.vae_scale,
            controls: self.controls,
        };
        // The default itself must be a number of steps the scheduler takes.
        let default_sampling =
            sampling(self.scheduler, self.controls.steps, self.controls.guidance);
        pipeline
            .scheduler(&default_sampling)
            .with_context(|| format!("{} steps by default", self.controls.steps))?;
        Ok(start(pipeline, device, self.config, shape, self.scheduler))
    }
}

fn sampling(scheduler: SchedulerKind, steps: usize, guidance: f32) -> Sampling {
    Sampling {
        steps,
        guidance: f64::from(guidance),
        scheduler,
        noise_level: 0,
    }
}

fn start<B: Backend>(
    pipeline: UnclipPipeline<B>,
    device: B::Device,
    config: RuntimeConfig,
    shape: DiffusionShape,
    scheduler: SchedulerKind,
) -> GeneratorRuntime {
    // Checked on the caller's thread, from the schedule alone: the networks stay on the runtime's.
    let schedule = pipeline.scheduler_config().to_string();
    let steps_check: StepsCheck = Arc::new(move |steps| {
        Scheduler::<B>::from_config_json(scheduler, &schedule, steps)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let controls = shape.controls;
    let latent_shape = shape.latent_shape;
    let (runtime, receiver, stats) = GeneratorRuntime::for_diffusion(&config, shape, steps_check);
    let server = Server {
        pipeline,
        device,
        config,
        stats,
        controls,
        scheduler,
        latent_shape,
        width: runtime.feature_dim(),
    };
    std::thread::Builder::new()
        .name("s2v-diffusion".into())
        .spawn(move || server.serve(receiver))
        .expect("the OS can start a thread");
    runtime
}

/// One request's pictures, denoised together.
struct Run<B: Backend> {
    job: Job,
    denoising: Denoising<B>,
}

struct Server<B: Backend> {
    pipeline: UnclipPipeline<B>,
    device: B::Device,
    config: RuntimeConfig,
    stats: Arc<RuntimeStats>,
    controls: DiffusionControls,
    scheduler: SchedulerKind,
    latent_shape: [usize; 3],
    width: usize,
}

impl<B: Backend> Server<B> {
    fn serve(self, receiver: Receiver<Job>) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut running: Vec<Run<B>> = Vec::new();
        loop {
            if !self.receive(&receiver, &mut waiting, running.is_empty()) {
                return; // every handle dropped: shut down
            }
            self.drop_abandoned(&mut running);
            self.admit(&mut waiting, &mut running);
            if running.is_empty() {
                continue;
            }
            self.step(&mut running);
        }
    }

    /// Takes what the queue holds; when nothing runs, waits for a request and then a moment for more, so
    /// that requests sent together start together. Returns false once the queue is closed and empty.
    fn receive(&self, receiver: &Receiver<Job>, waiting: &mut VecDeque<Job>, idle: bool) -> bool {
        let take = |waiting: &mut VecDeque<Job>, job: Job| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            waiting.push_back(job);
        };
        if idle && waiting.is_empty() {
            match receiver.recv() {
                Ok(job) => take(waiting, job),
                Err(_) => return false,
            }
            let deadline = Instant::now() + self.config.batch_wait;
            while let Ok(job) =
                receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                take(waiting, job);
            }
        }
        loop {
            match receiver.try_recv() {
                Ok(job) => take(waiting, job),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return !waiting.is_empty() || !idle,
            }
        }
    }

    /// Stops denoising for clients that left.
    fn drop_abandoned(&self, running: &mut Vec<Run<B>>) {
        running.retain(|run| {
            let gone = run.job.reply.is_closed();
            if gone {
                self.stats
                    .dropped_images
                    .fetch_add(run.denoising.len() as u64, Ordering::Relaxed);
            }
            !gone
        });
    }

    /// Starts waiting requests while their pictures fit in a batch (a request larger than a batch runs alone).
    fn admit(&self, waiting: &mut VecDeque<Job>, running: &mut Vec<Run<B>>) {
        let max_batch = self.config.max_batch.max(1);
        while let Some(job) = waiting.front() {
            let rows: usize = running.iter().map(|r| r.denoising.len()).sum();
            if !running.is_empty() && rows + job.request.count > max_batch {
                return;
            }
            let Some(job) = waiting.pop_front() else {
                return;
            };
            if job.reply.is_closed() {
                self.stats
                    .dropped_images
                    .fetch_add(job.request.count as u64, Ordering::Relaxed);
                continue;
            }
            match self.begin(&job) {
                Ok(denoising) => running.push(Run { job, denoising }),
                Err(error) => {
                    let _ = job.reply.send(Err(error));
                }
            }
        }
    }

    /// A request's pictures ready to denoise: its embedding for each, and its seeded noise.
    fn begin(&self, job: &Job) -> Result<Denoising<B>, GenerationError> {
        let request = &job.request;
        let n = request.count;
        let [c, h, w] = self.latent_shape;
        let (latents, image_noise) = job.noise.split_at(n * c * h * w);
        let embeddings: Vec<f32> = (0..n)
            .flat_map(|_| request.latent.iter().copied())
            .collect();
        let tensor2 = |data: Vec<f32>| {
            Tensor::<B, 2>::from_data(TensorData::new(data, [n, self.width]), &self.device)
        };
        let latents = Tensor::<B, 4>::from_data(
            TensorData::new(latents.to_vec(), [n, c, h, w]),
            &self.device,
        );
        let sampling = sampling(
            self.scheduler,
            request.steps.unwrap_or(self.controls.steps),
            request.guidance.unwrap_or(self.controls.guidance),
        );
        self.pipeline
            .start(
                tensor2(embeddings),
                latents,
                tensor2(image_noise.to_vec()),
                &sampling,
            )
            .map_err(|e| GenerationError::Backend(e.to_string()))
    }

    /// One UNet call for every running picture, then the previews that are due and the finished images.
    fn step(&self, running: &mut Vec<Run<B>>) {
        let rows: usize = running.iter().map(|r| r.denoising.len()).sum();
        let mut runs: Vec<&mut Denoising<B>> =
            running.iter_mut().map(|r| &mut r.denoising).collect();
        let stepped = self.pipeline.step_together(&mut runs);
        self.stats.count_batch(rows);
        if let Err(error) = stepped {
            let error = GenerationError::Backend(error.to_string());
            for run in running.drain(..) {
                let _ = run.job.reply.send(Err(error.clone()));
            }
            return;
        }
        let mut index = 0;
        while index < running.len() {
            let run = &running[index];
            let result = if run.denoising.is_finished() {
                self.send_finished(run)
            } else {
                self.send_preview_if_due(run)
            };
            if let Err(error) = &result {
                let _ = run.job.reply.send(Err(error.clone()));
            }
            if run.denoising.is_finished() || result.is_err() {
                running.swap_remove(index);
            } else {
                index += 1;
            }
        }
    }

    fn send_preview_if_due(&self, run: &Run<B>) -> Result<(), GenerationError> {
        let every = self.controls.preview_every;
        let done = run.denoising.calls_done();
        let Some(clean) = run.denoising.predicted_clean() else {
            return Ok(());
        };
        if every == 0 || !done.is_multiple_of(every) {
            return Ok(());
        }
        let step = PreviewStep {
            step: done,
            steps: run.denoising.calls(),
        };
        let pixels = self.pipeline.decode(clean.clone());
        self.send_images(run, pixels, Some(step))
    }

    fn send_finished(&self, run: &Run<B>) -> Result<(), GenerationError> {
        let pixels = self.pipeline.decode(run.denoising.latents().clone());
        self.send_images(run, pixels, None)
    }

    /// Sends a request's pictures `[n, 3, H, W]` in [0, 1] (previews shrunk).
    fn send_images(
        &self,
        run: &Run<B>,
        pixels: Tensor<B, 4>,
        preview: Option<PreviewStep>,
    ) -> Result<(), GenerationError> {
        let pixels = match preview {
            Some(_) => shrink(pixels, PREVIEW_SIDE),
            None => pixels,
        };
        let [_, _, height, width] = pixels.dims();
        let values = pixels
            .mul_scalar(2.0)
            .sub_scalar(1.0)
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| GenerationError::Backend(format!("{e:?}")))?;
        for (index, chw) in values.chunks(3 * height * width).enumerate() {
            // A closed receiver only means the client left; the next round drops the run.
            let _ = run.job.reply.send(Ok(GeneratedImage {
                index,
                width,
                height,
                rgb: crate::pictures::to_rgb8(chw, height, width),
                preview,
            }));
        }
        Ok(())
    }
}

/// Pictures averaged down by a whole factor until their side is at most `side`.
fn shrink<B: Backend>(pixels: Tensor<B, 4>, side: usize) -> Tensor<B, 4> {
    let [_, _, height, width] = pixels.dims();
    let factor = height.max(width).div_ceil(side.max(1));
    if factor <= 1 {
        return pixels;
    }
    burn::tensor::module::avg_pool2d(
        pixels,
        [factor, factor],
        [factor, factor],
        [0, 0],
        true,
        false,
    )
}
