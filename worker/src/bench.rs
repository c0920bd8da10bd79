//! `s2v bench`: times one network at the published size (random weights: the same arithmetic as the real
//! ones) on any device, the way a user meets it: the time to set it up, the first call (kernels compiled,
//! buffers allocated), then the steady state. The default model's training steps are timed the same way.
//!
//! Weights and inputs are drawn on the CPU from a fixed seed and moved to the device, so two devices (CUDA in
//! f32 and in f16, say) compute on the same numbers and `--out` files can be compared.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use s2v_models::checkpoint::{SyntheticFill, TorchStateDict};
use s2v_models::checkpoint::{load_native, to_native_bytes};
use s2v_models::loss::info_nce_l2;
use s2v_models::unclip::unet::{Unet, UnetConfig};
use s2v_models::unclip::vae_decoder::{VaeConfig, VaeDecoder};
use s2v_models::{
    AudioEncoder, AudioEncoderConfig, Generator, GeneratorConfig, ImageEncoder, ImageEncoderConfig,
    NetworkModule,
};
use s2v_serving::device::OnBackend;
use s2v_shared::audio::{CLIP_SAMPLES, log_spectrogram};
use s2v_train::trainer::{Preset, Recipe};
use serde::Serialize;

use crate::arrays::Array;

/// What `s2v bench` can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchTarget {
    /// The normalised log-spectrogram of a 10 s clip (always on the CPU).
    Spectrogram,
    /// ResNet-18 audio encoder, 257 x 1004 spectrograms in, 2048 features out.
    AudioEncoder,
    /// ResNet-50 image encoder, 224 x 224 pictures in.
    ImageEncoder,
    /// BigGAN 128 x 128 (`G_ch=96`) instance-conditioned generator.
    Generator,
    /// One training step (forward, loss, backward; no optimiser) of the default model's audio encoder.
    TrainAudioEncoder,
    /// One training step of the default model's image encoder.
    TrainImageEncoder,
    /// One training step of the default model's generator.
    TrainGenerator,
    /// One guided call of Stable unCLIP 2.1's UNet (870 M parameters) on 96 x 96 latents, as a 768 x 768
    /// picture takes at each step: twice the batch, for classifier-free guidance.
    UnclipUnet,
    /// Stable unCLIP 2.1's VAE decoder, 96 x 96 latents to 768 x 768 pixels.
    UnclipVae,
}

/// One timing run.
pub struct Bench {
    pub target: BenchTarget,
    pub batch: usize,
    pub runs: usize,
    /// Where to write the last output (inference targets), for comparing devices.
    pub out: Option<PathBuf>,
}

/// What one run measured, printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub target: BenchTarget,
    pub backend: String,
    pub batch: usize,
    pub runs: usize,
    /// Building the network and moving weights and inputs to the device.
    pub setup_s: f64,
    /// The first call, with everything it sets up (kernel compilation on GPUs).
    pub first_s: f64,
    pub median_s: f64,
    pub min_s: f64,
    /// Items (clips, pictures, images, training examples) per second at the median.
    pub items_per_s: f64,
}

const SEED: u64 = 20_230_601;

impl OnBackend for Bench {
    type Output = BenchReport;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<BenchReport> {
        anyhow::ensure!(
            self.batch > 0 && self.runs > 0,
            "--batch and --runs must be positive"
        );
        let setup_start = Instant::now();
        let mut step = self.step::<B>(&device)?;
        let setup = setup_start.elapsed();
        let first_start = Instant::now();
        let mut output = step()?;
        let first = first_start.elapsed();
        let mut times = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let start = Instant::now();
            output = step()?;
            times.push(start.elapsed());
        }
        if let (Some(path), Some(output)) = (&self.out, output) {
            output.write(path)?;
        }
        times.sort();
        let median = times[times.len() / 2];
        Ok(BenchReport {
            target: self.target,
            backend: std::any::type_name::<B>().to_string(),
            batch: self.batch,
            runs: self.runs,
            setup_s: setup.as_secs_f64(),
            first_s: first.as_secs_f64(),
            median_s: median.as_secs_f64(),
            min_s: times[0].as_secs_f64(),
            items_per_s: self.batch as f64 / median.as_secs_f64().max(f64::MIN_POSITIVE),
        })
    }
}

/// One timed call; inference targets return their output (read back to the host, which also waits for the
/// device to finish).
type Step<'a> = Box<dyn FnMut() -> anyhow::Result<Option<Array>> + 'a>;

impl Bench {
    fn step<'a, B: Backend>(&self, device: &'a B::Device) -> anyhow::Result<Step<'a>> {
        let n = self.batch;
        Ok(match self.target {
            BenchTarget::Spectrogram => {
                let wave: Vec<f64> = (0..CLIP_SAMPLES)
                    .map(|i| (i as f64 * 0.01).sin() * 0.5)
                    .collect();
                Box::new(move || {
                    for _ in 0..n {
                        log_spectrogram(&wave)?;
                    }
                    Ok(None)
                })
            }
            BenchTarget::AudioEncoder => {
                let weights =
                    seeded_weights::<AudioEncoder<Flex>>(&AudioEncoderConfig::published())?;
                let encoder: AudioEncoder<B> = load_native::<B, _>(&weights, device)?;
                let input = seeded_input::<B, 4>([n, 1, 257, 1004], normal(), device);
                Box::new(move || Ok(Some(read(encoder.forward(input.clone()))?)))
            }
            BenchTarget::ImageEncoder => {
                let weights =
                    seeded_weights::<ImageEncoder<Flex>>(&ImageEncoderConfig::published())?;
                let encoder: ImageEncoder<B> = load_native::<B, _>(&weights, device)?;
                let input = seeded_input::<B, 4>([n, 3, 224, 224], normal(), device);
                Box::new(move || Ok(Some(read(encoder.forward(input.clone()))?)))
            }
            BenchTarget::Generator => {
                let config = GeneratorConfig::published_128();
                let weights = seeded_weights::<Generator<Flex>>(&config)?;
                let generator: Generator<B> = load_native::<B, _>(&weights, device)?;
                let z = seeded_input::<B, 2>([n, config.dim_z()], normal(), device);
                let features = seeded_input::<B, 2>([n, config.feature_dim], uniform(), device);
                let features = features.clone() / features.powi_scalar(2).sum_dim(1).sqrt();
                Box::new(move || Ok(Some(read(generator.forward(z.clone(), features.clone()))?)))
            }
            BenchTarget::TrainAudioEncoder => train_audio_encoder::<B>(n, device)?,
            BenchTarget::TrainImageEncoder => train_image_encoder::<B>(n, device)?,
            BenchTarget::TrainGenerator => train_generator::<B>(n, device)?,
            BenchTarget::UnclipUnet => unclip_unet::<B>(n, device)?,
            BenchTarget::UnclipVae => {
                let weights = TorchStateDict::synthetic("VAE decoder", synthetic_weights());
                let decoder =
                    VaeDecoder::<B>::read(weights, &VaeConfig::stable_diffusion(), device)?;
                let latents = seeded_input::<B, 4>([n, 4, 96, 96], normal(), device);
                Box::new(move || Ok(Some(read(decoder.forward(latents.clone()))?)))
            }
        })
    }
}

/// Weights for the unCLIP networks, made up from [`SEED`] where the layers ask for them (the published files
/// are gigabytes, and the arithmetic is the same).
fn synthetic_weights() -> SyntheticFill {
    SyntheticFill::Random {
        std: 0.02,
        seed: SEED,
    }
}

fn unclip_unet<B: Backend>(n: usize, device: &B::Device) -> anyhow::Result<Step<'_>> {
    let config = UnetConfig::stable_unclip_2_1();
    let unet = Unet::<B>::read(
        TorchStateDict::synthetic("UNet", synthetic_weights()),
        &config,
        device,
    )?;
    let batch = 2 * n;
    let latents = seeded_input::<B, 4>([batch, 4, 96, 96], normal(), device);
    let states = seeded_input::<B, 3>([batch, 77, config.cross_attention_dim], normal(), device);
    let class = seeded_input::<B, 2>([batch, 2048], normal(), device);
    let timesteps = vec![500.0; batch];
    Ok(Box::new(move || {
        let output = unet.forward(
            latents.clone(),
            &timesteps,
            states.clone(),
            Some(class.clone()),
        );
        Ok(Some(read(output)?))
    }))
}

fn train_audio_encoder<B: Backend>(n: usize, device: &B::Device) -> anyhow::Result<Step<'_>> {
    let recipe = Recipe::preset(Preset::Default);
    let weights = seeded_weights::<AudioEncoder<Flex>>(&recipe.audio_encoder)?;
    let encoder: AudioEncoder<Autodiff<B>> = load_native::<Autodiff<B>, _>(&weights, device)?;
    let input = seeded_input::<Autodiff<B>, 4>([n, 1, 257, 1004], normal(), device);
    let visual = seeded_input([n, recipe.audio_encoder.embedding_dim], uniform(), device);
    Ok(Box::new(move || {
        let loss = info_nce_l2(encoder.forward(input.clone()), visual.clone());
        let _gradients = loss.backward();
        Ok(None)
    }))
}

fn train_image_encoder<B: Backend>(n: usize, device: &B::Device) -> anyhow::Result<Step<'_>> {
    let recipe = Recipe::preset(Preset::Default);
    let weights = seeded_weights::<ImageEncoder<Flex>>(&recipe.image_encoder)?;
    let encoder: ImageEncoder<Autodiff<B>> = load_native::<Autodiff<B>, _>(&weights, device)?;
    let size = recipe.resolution;
    let input = seeded_input::<Autodiff<B>, 4>([n, 3, size, size], normal(), device);
    Ok(Box::new(move || {
        encoder
            .forward(input.clone())
            .powi_scalar(2)
            .mean()
            .backward();
        Ok(None)
    }))
}

fn train_generator<B: Backend>(n: usize, device: &B::Device) -> anyhow::Result<Step<'_>> {
    let recipe = Recipe::preset(Preset::Default);
    let weights = seeded_weights::<Generator<Flex>>(&recipe.generator)?;
    let generator: Generator<Autodiff<B>> = load_native::<Autodiff<B>, _>(&weights, device)?;
    let z = seeded_input::<Autodiff<B>, 2>([n, recipe.generator.dim_z()], normal(), device);
    let f = seeded_input([n, recipe.generator.feature_dim], uniform(), device);
    Ok(Box::new(move || {
        generator.forward(z.clone(), f.clone()).mean().backward();
        Ok(None)
    }))
}

/// A network's weights drawn on the CPU from [`SEED`], in the native format: loading them on a device also
/// converts them to its float type.
fn seeded_weights<N: NetworkModule<Flex>>(config: &N::Config) -> anyhow::Result<Vec<u8>> {
    Flex::seed(&Default::default(), SEED);
    let on_cpu = N::init(config, &Default::default())?;
    Ok(to_native_bytes(&on_cpu, false)?)
}

fn normal() -> Distribution {
    Distribution::Normal(0.0, 1.0)
}

fn uniform() -> Distribution {
    Distribution::Uniform(0.0, 1.0)
}

/// An input drawn on the CPU from [`SEED`] and copied to `device`.
fn seeded_input<B: Backend, const D: usize>(
    shape: [usize; D],
    distribution: Distribution,
    device: &B::Device,
) -> Tensor<B, D> {
    Flex::seed(&Default::default(), SEED);
    let data = Tensor::<Flex, D>::random(shape, distribution, &Default::default()).into_data();
    Tensor::from_data(data.convert::<f32>(), device)
}

/// Reads a result back to the host as f32.
fn read<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> anyhow::Result<Array> {
    let shape = tensor.dims().to_vec();
    let data = tensor.into_data().convert::<f32>();
    let data = data
        .to_vec()
        .map_err(|e| anyhow::anyhow!("reading the output back: {e:?}"))?;
    Ok(Array { shape, data })
}
