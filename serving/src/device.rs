//! Choosing the burn backend at run time. Every command is generic over the backend; this module calls it
//! with the one asked for.

use clap::ValueEnum;

/// The compute device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// CUDA if this binary has it and a CUDA device answers, else wgpu on a hardware GPU if this binary has
    /// wgpu, else flex.
    Auto,
    /// Pure-Rust CPU backend (always available).
    Flex,
    /// WebGPU/Vulkan/Metal through wgpu (cargo feature `wgpu`).
    Wgpu,
    /// NVIDIA GPUs through CUDA (cargo feature `cuda`; kernels compiled at run time by NVRTC).
    Cuda,
    /// CUDA with f16 tensors: half the memory traffic, for inference only (weights and inputs are converted
    /// from f32 as they load; training needs f32's range).
    CudaF16,
}

/// A computation that can run on any backend.
pub trait OnBackend {
    type Output;
    fn run<B: burn::prelude::Backend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

impl DeviceKind {
    /// The concrete backend for `Auto`; the others are returned as they are.
    pub fn resolve(self) -> DeviceKind {
        if self != DeviceKind::Auto {
            return self;
        }
        #[cfg(feature = "cuda")]
        if cuda_answers() {
            return DeviceKind::Cuda;
        }
        #[cfg(feature = "wgpu")]
        if hardware_gpu_adapter().is_some() {
            return DeviceKind::Wgpu;
        }
        DeviceKind::Flex
    }
}

/// Whether a CUDA device runs a trivial kernel. cubecl panics when there is no driver or device; that is a
/// "no" here, with its message silenced.
#[cfg(feature = "cuda")]
fn cuda_answers() -> bool {
    use burn::prelude::*;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let answered = std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice::default();
        Tensor::<burn::backend::Cuda, 1>::ones([1], &device).into_data();
    })
    .is_ok();
    std::panic::set_hook(hook);
    answered
}

/// The name of a wgpu adapter that is a real GPU (software renderers such as lavapipe do not count).
#[cfg(feature = "wgpu")]
pub fn hardware_gpu_adapter() -> Option<String> {
    let instance = wgpu::Instance::default();
    let adapters =
        futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters
        .iter()
        .map(|a| a.get_info())
        .find(|info| info.device_type != wgpu::DeviceType::Cpu)
        .map(|info| info.name)
}

/// Runs `job` on the requested backend, or says which cargo feature the binary lacks.
pub fn dispatch<J: OnBackend>(kind: DeviceKind, job: J) -> anyhow::Result<J::Output> {
    let kind = kind.resolve();
    tracing::info!(device = ?kind, "compute device");
    match kind {
        DeviceKind::Auto => unreachable!("resolve() returns a concrete device"),
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
        DeviceKind::CudaF16 => {
            #[cfg(feature = "cuda")]
            {
                job.run::<burn::backend::Cuda<burn::tensor::f16>>(Default::default())
            }
            #[cfg(not(feature = "cuda"))]
            anyhow::bail!("this s2v was built without CUDA support: rebuild with `--features cuda`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_devices_are_kept() {
        for kind in [
            DeviceKind::Flex,
            DeviceKind::Wgpu,
            DeviceKind::Cuda,
            DeviceKind::CudaF16,
        ] {
            assert_eq!(kind.resolve(), kind);
        }
    }

    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    #[test]
    fn auto_is_flex_without_gpu_backends() {
        assert_eq!(DeviceKind::Auto.resolve(), DeviceKind::Flex);
    }
}
