//! Choosing the burn backend at run time. Every command is generic over the backend; this module calls it
//! with the one asked for.

use clap::ValueEnum;

/// The compute device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// Pure-Rust CPU backend (always available).
    Flex,
    /// WebGPU/Vulkan/Metal through wgpu (cargo feature `wgpu`).
    Wgpu,
    /// NVIDIA GPUs through CUDA (cargo feature `cuda`; kernels compiled at run time by NVRTC).
    Cuda,
}

/// A computation that can run on any backend.
pub trait OnBackend {
    type Output;
    fn run<B: burn::prelude::Backend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on the requested backend, or says which cargo feature the binary lacks.
pub fn dispatch<J: OnBackend>(kind: DeviceKind, job: J) -> anyhow::Result<J::Output> {
    match kind {
        DeviceKind::Flex => job.run::<burn::backend::Flex>(Default::default()),
        DeviceKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                job.run::<burn::backend::Wgpu>(burn::backend::wgpu::WgpuDevice::DefaultDevice)
            }
            #[cfg(not(feature = "wgpu"))]
            anyhow::bail!("this s2v was built without wgpu support: rebuild with `--features wgpu`")
        }
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                job.run::<burn::backend::Cuda>(Default::default())
            }
            #[cfg(not(feature = "cuda"))]
            anyhow::bail!("this s2v was built without CUDA support: rebuild with `--features cuda`")
        }
    }
}
