//! `s2v convert-unclip` and `s2v unclip`: the diffusion variant from the command line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::prelude::*;
use s2v_models::unclip::convert::{AUDIO_ENCODER, ConvertedUnclip, UnclipManifest, convert_unclip};
use s2v_models::unclip::pipeline::{Sampling, UnclipPipeline, seeded_noise};
use s2v_serving::device::OnBackend;

use crate::arrays::Array;
use crate::commands::{DEFAULT_BATCH, EncodeAudio};

/// UNets larger than this are refused on the CPU unless forced: Stable unCLIP's 870 M parameters take
/// minutes a step there.
pub const CPU_PARAMETER_LIMIT: usize = 100_000_000;

/// `s2v convert-unclip`.
pub struct ConvertUnclip {
    pub diffusers: PathBuf,
    pub audio_encoder: PathBuf,
    pub out: PathBuf,
}

impl OnBackend for ConvertUnclip {
    type Output = UnclipManifest;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<UnclipManifest> {
        convert_unclip::<B>(&self.diffusers, &self.audio_encoder, &self.out, &device)
            .with_context(|| format!("cannot convert {}", self.diffusers.display()))
    }
}

/// Where the embeddings come from.
pub enum EmbeddingSource {
    /// Sounds, through the model's audio encoder.
    Audio(Vec<PathBuf>),
    /// An `N x width` array.
    File(PathBuf),
}

/// `s2v unclip`.
pub struct Unclip {
    pub model: PathBuf,
    pub source: EmbeddingSource,
    pub sampling: Sampling,
    /// Side of the pictures in pixels; the model's own when `None`.
    pub size: Option<usize>,
    pub seed: u64,
    pub latents: Option<PathBuf>,
    pub image_noise: Option<PathBuf>,
    /// The backend computes on the CPU, where a UNet of more than `cpu_parameter_limit` parameters is
    /// refused unless `force`.
    pub on_cpu: bool,
    pub cpu_parameter_limit: usize,
    pub force: bool,
}

impl OnBackend for Unclip {
    /// Pictures `N x 3 x H x W` in [0, 1].
    type Output = Array;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<Array> {
        let model = ConvertedUnclip::open(&self.model)?;
        let manifest = &model.manifest;
        let side = self.latent_side(manifest)?;
        let embeddings = self.embeddings::<B>(manifest, &device)?;
        let n = embeddings.rows();
        let pipeline = model.load::<B>(&device)?;
        let latent_shape = [n, manifest.latent_channels, side, side];
        let (latents, image_noise) = self.noise(latent_shape, manifest.embedding_width)?;
        let tensor2 = |a: &Array| {
            Tensor::<B, 2>::from_data(TensorData::new(a.data.clone(), [n, a.row_len()]), &device)
        };
        let latents =
            Tensor::<B, 4>::from_data(TensorData::new(latents.data, latent_shape), &device);
        if self.on_cpu && manifest.unet_parameters > self.cpu_parameter_limit && !self.force {
            bail!(self.cpu_estimate(&pipeline, manifest, latent_shape, &device)?);
        }
        let started = Instant::now();
        let pixels = pipeline.generate(
            tensor2(&embeddings),
            latents,
            tensor2(&image_noise),
            &self.sampling,
            |p| {
                eprintln!(
                    "step {} of {} ({:.1} s)",
                    p.call + 1,
                    p.calls,
                    started.elapsed().as_secs_f64()
                );
            },
        )?;
        let shape = pixels.dims().to_vec();
        let data = pixels
            .into_data()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("reading the pictures: {e:?}"))?;
        Ok(Array { shape, data })
    }
}

impl Unclip {
    fn latent_side(&self, manifest: &UnclipManifest) -> anyhow::Result<usize> {
        let Some(size) = self.size else {
            return Ok(manifest.sample_size);
        };
        // The UNet halves the latents three times at most in Stable unCLIP; a multiple of 8 latents is safe.
        let step = manifest.vae_scale * 8;
        if size == 0 || !size.is_multiple_of(step) {
            bail!(
                "--size {size}: the pictures' side must be a positive multiple of {step} pixels for this model"
            );
        }
        Ok(size / manifest.vae_scale)
    }

    fn embeddings<B: Backend>(
        &self,
        manifest: &UnclipManifest,
        device: &B::Device,
    ) -> anyhow::Result<Array> {
        let width = manifest.embedding_width;
        match &self.source {
            EmbeddingSource::File(path) => Array::read_rows(path, width, "the embeddings"),
            // `s2v encode-audio`'s job, with the model's own encoder.
            EmbeddingSource::Audio(files) => EncodeAudio {
                checkpoint: Some(self.model.join(AUDIO_ENCODER)),
                audio: files.clone(),
                batch_size: DEFAULT_BATCH,
            }
            .run::<B>(device.clone()),
        }
    }

    /// The starting latents and the embedding's noise: from files, or one seeded stream (latents first).
    fn noise(&self, latent_shape: [usize; 4], width: usize) -> anyhow::Result<(Array, Array)> {
        let [n, channels, height, width_latent] = latent_shape;
        let (drawn, image_noise) =
            seeded_noise(self.seed, n, [channels, height, width_latent], width);
        let latents = match &self.latents {
            Some(path) => {
                let array = Array::read(path)?;
                if array.shape != latent_shape {
                    bail!(
                        "{} has shape {:?}; the latents must be {latent_shape:?}",
                        path.display(),
                        array.shape
                    );
                }
                array
            }
            None => Array {
                shape: latent_shape.to_vec(),
                data: drawn,
            },
        };
        let image_noise = match &self.image_noise {
            Some(path) => {
                let array = Array::read_rows(path, width, "the image noise")?;
                if array.rows() != n {
                    bail!(
                        "{} has {} rows for {n} embeddings",
                        path.display(),
                        array.rows()
                    );
                }
                array
            }
            None => Array {
                shape: vec![n, width],
                data: image_noise,
            },
        };
        Ok((latents, image_noise))
    }

    /// Why a full-size model is refused on the CPU: one UNet call timed on the smallest latents it takes,
    /// scaled to the asked size and number of calls (at least; attention grows faster than the area).
    fn cpu_estimate<B: Backend>(
        &self,
        pipeline: &UnclipPipeline<B>,
        manifest: &UnclipManifest,
        [n, channels, side, _]: [usize; 4],
        device: &B::Device,
    ) -> anyhow::Result<String> {
        let probe = 8;
        let seconds = pipeline.time_unet_call(channels, probe, device);
        let guided = if self.sampling.guidance > 1.0 {
            2.0
        } else {
            1.0
        };
        let calls = self.sampling.steps + 1;
        let total = seconds * (side * side) as f64 / (probe * probe) as f64
            * calls as f64
            * guided
            * n as f64;
        let parameters = manifest.unet_parameters as f64 / 1e6;
        let pixels = side * manifest.vae_scale;
        let (steps, minutes) = (self.sampling.steps, total / 60.0);
        Ok(format!(
            "this UNet has {parameters:.0} M parameters; on the CPU one call on {probe} x {probe} latents took \
             {seconds:.1} s, so {n} picture(s) of {pixels} x {pixels} pixels at {steps} steps would take at least \
             {minutes:.0} minutes. Use a GPU (--device cuda), or pass --force to run it here anyway."
        ))
    }
}
