//! Checkpoints: the project's own format (safetensors with the network's configuration in its metadata,
//! optionally f16), and PyTorch `.pth` / `.pth.tar` import (feature `torch`).

mod error;
mod native;
#[cfg(feature = "torch")]
mod torch;
#[cfg(feature = "torch")]
pub mod torch_layers;
#[cfg(feature = "train")]
mod torch_names;

pub use burn_store::TensorSnapshot;
pub use error::CheckpointError;
#[cfg(feature = "std")]
pub use native::save_native;
pub use native::{NativeHeader, load_native, read_native_header, to_native_bytes};
#[cfg(feature = "torch")]
pub use torch::{FromTorch, TorchStateDict, is_batch_counter, load_checkpoint, read_torch_tensors};
#[cfg(feature = "train")]
pub use torch_names::{TorchNamed, TorchNames};

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
