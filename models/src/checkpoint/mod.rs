//! Checkpoints: PyTorch `.pth` / `.pth.tar` import, and the project's own format (safetensors with the network's
//! configuration in its metadata, optionally f16).

mod error;
mod native;
mod torch;
mod torch_names;

pub use burn_store::TensorSnapshot;
pub use error::CheckpointError;
pub use native::{NativeHeader, load_native, read_native_header, save_native, to_native_bytes};
pub use torch::{TorchStateDict, is_batch_counter, read_torch_tensors};
pub use torch_names::{TorchNamed, TorchNames};

use std::path::Path;

use burn::prelude::*;

use crate::NetworkModule;

/// How a checkpoint file is stored, told from its first bytes (never from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `torch.save` output: a zip archive (PyTorch >= 1.6) or a legacy pickle stream.
    Torch,
    /// The project's own format (safetensors with `s2v.*` metadata).
    Native,
}

impl CheckpointFormat {
    pub fn detect(head: &[u8]) -> Result<Self, CheckpointError> {
        match head {
            [b'P', b'K', ..] | [0x80, ..] => Ok(Self::Torch),
            [a, b, c, d, e, f, g, h, b'{', ..] => {
                let header_len = u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if header_len > 0 {
                    Ok(Self::Native)
                } else {
                    Err(CheckpointError::UnknownFormat)
                }
            }
            _ => Err(CheckpointError::UnknownFormat),
        }
    }
}

/// Loads a network from either a PyTorch checkpoint or the project's own format.
pub fn load_checkpoint<B: Backend, N: NetworkModule<B>>(
    path: &Path,
    device: &B::Device,
) -> Result<N, CheckpointError> {
    let io = |e: std::io::Error| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut head = [0u8; 16];
    let read = {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(io)?;
        file.read(&mut head).map_err(io)?
    };
    match CheckpointFormat::detect(&head[..read])? {
        CheckpointFormat::Torch => N::from_torch(TorchStateDict::read(path)?, device),
        CheckpointFormat::Native => load_native(&std::fs::read(path).map_err(io)?, device),
    }
}
