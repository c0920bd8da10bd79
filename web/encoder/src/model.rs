//! The audio encoder on the backend the browser allows: burn's wgpu backend on a WebGPU adapter, else its CPU
//! backend (on a thread per core in the build with threads). Outputs are read asynchronously: a browser
//! cannot block on the GPU.

use burn::backend::Flex;
#[cfg(feature = "webgpu")]
use burn::backend::Wgpu;
#[cfg(feature = "webgpu")]
use burn::backend::wgpu::{RuntimeOptions, WgpuDevice, graphics::WebGpu, init_setup_async};
use burn::prelude::*;
use s2v_models::AudioEncoder;
use s2v_models::checkpoint::load_native;
use s2v_shared::audio::{FREQ_BINS, TIME_FRAMES, log_spectrogram};
use s2v_shared::browser::webgpu_adapter;
use s2v_shared::encoder_protocol::EncoderBackend;

/// A loaded audio encoder.
pub enum Encoder {
    #[cfg(feature = "webgpu")]
    WebGpu(Box<AudioEncoder<Wgpu>>, WgpuDevice),
    Cpu(Box<AudioEncoder<Flex>>),
}

impl Encoder {
    /// The network from its weights (the project's format), on WebGPU when `try_gpu` and an adapter answers.
    /// Returns why the CPU runs where WebGPU was wanted.
    pub async fn load(weights: &[u8], try_gpu: bool) -> Result<(Self, Option<String>), String> {
        let no_webgpu = if try_gpu {
            match webgpu_adapter().await {
                Ok(()) => return Self::load_webgpu(weights).await,
                Err(why) => Some(why),
            }
        } else {
            None
        };
        let encoder = load_native(weights, &Default::default()).map_err(|e| e.to_string())?;
        Ok((Self::Cpu(Box::new(encoder)), no_webgpu))
    }

    #[cfg(feature = "webgpu")]
    async fn load_webgpu(weights: &[u8]) -> Result<(Self, Option<String>), String> {
        let device = WgpuDevice::default();
        init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
        let encoder = load_native(weights, &device).map_err(|e| e.to_string())?;
        Ok((Self::WebGpu(Box::new(encoder), device), None))
    }

    /// The build with threads has no WebGPU (the page starts it only where it found no adapter, or after
    /// WebGPU failed), so an adapter here goes unused.
    #[cfg(not(feature = "webgpu"))]
    async fn load_webgpu(weights: &[u8]) -> Result<(Self, Option<String>), String> {
        let encoder = load_native(weights, &Default::default()).map_err(|e| e.to_string())?;
        let why = "this build of the encoder has none".to_string();
        Ok((Self::Cpu(Box::new(encoder)), Some(why)))
    }

    pub fn backend(&self) -> EncoderBackend {
        match self {
            #[cfg(feature = "webgpu")]
            Self::WebGpu(..) => EncoderBackend::WebGpu,
            Self::Cpu(_) => EncoderBackend::Cpu,
        }
    }

    /// The threads the network runs on: one on WebGPU and in the build without threads, else the pool's.
    pub fn threads(&self) -> usize {
        match self {
            #[cfg(feature = "webgpu")]
            Self::WebGpu(..) => 1,
            Self::Cpu(_) => cpu_threads(),
        }
    }

    /// The latent of a log-spectrogram (`FREQ_BINS x TIME_FRAMES` values).
    pub async fn latent(&self, spectrogram: Vec<f32>) -> Result<Vec<f32>, String> {
        match self {
            #[cfg(feature = "webgpu")]
            Self::WebGpu(encoder, device) => forward(encoder, spectrogram, device).await,
            Self::Cpu(encoder) => forward(encoder, spectrogram, &Default::default()).await,
        }
    }
}

#[cfg(feature = "threads")]
fn cpu_threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(feature = "threads"))]
fn cpu_threads() -> usize {
    1
}

async fn forward<B: Backend>(
    encoder: &AudioEncoder<B>,
    spectrogram: Vec<f32>,
    device: &B::Device,
) -> Result<Vec<f32>, String> {
    let input = Tensor::<B, 4>::from_data(
        TensorData::new(spectrogram, [1, 1, FREQ_BINS, TIME_FRAMES]),
        device,
    );
    encoder
        .forward(input)
        .into_data_async()
        .await
        .map_err(|e| format!("reading the latent: {e:?}"))?
        .into_vec::<f32>()
        .map_err(|e| format!("reading the latent: {e:?}"))
}

/// The log-spectrogram the network reads, of a 10 s, 16 kHz clip.
pub fn spectrogram(clip: &[f32]) -> Result<Vec<f32>, String> {
    let samples: Vec<f64> = clip.iter().map(|&s| f64::from(s)).collect();
    Ok(log_spectrogram(&samples).map_err(|e| e.to_string())?.data)
}
