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
#[cfg(feature = "std")]
mod whole_file;

pub use burn_store::TensorSnapshot;
pub use error::CheckpointError;
#[cfg(feature = "std")]
pub use native::save_native;
pub use native::{NativeHeader, load_native, read_native_header, to_native_bytes};
#[cfg(feature = "torch")]
pub use torch::{
    FromTorch, SyntheticFill, TorchStateDict, is_batch_counter, load_checkpoint, read_torch_tensors,
};
#[cfg(feature = "train")]
pub use torch_names::{TorchNamed, TorchNames};
#[cfg(feature = "std")]
pub use whole_file::{partial_path, write_whole};

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
        // safetensors first: its header length is any 8 bytes, so its first byte can be a pickle's 0x80 (a
        // header of 0x380 bytes starts 0x80 0x03, a pickle of protocol 3). Neither a zip archive (compression
        // method there) nor a legacy pickle (its magic number) has '{' at byte 8.
        match head {
            [a, b, c, d, e, f, g, h, b'{', ..] => {
                let header_len = u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if header_len > 0 {
                    Ok(Self::Native)
                } else {
                    Err(CheckpointError::UnknownFormat)
                }
            }
            [b'P', b'K', 3, 4, ..] | [0x80, 2..=5, ..] => Ok(Self::Torch),
            _ => Err(CheckpointError::UnknownFormat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of a safetensors file whose JSON header is `header_len` bytes long.
    fn safetensors_head(header_len: u64) -> Vec<u8> {
        [&header_len.to_le_bytes()[..], b"{\"__metadata__\""].concat()
    }

    #[test]
    fn a_native_header_length_that_starts_like_a_pickle_is_still_native() {
        for header_len in [0x80, 0x280, 0x380, 0x480, 0x580, 0x1b80, 1234] {
            assert_eq!(
                CheckpointFormat::detect(&safetensors_head(header_len)).unwrap(),
                CheckpointFormat::Native,
                "header of {header_len:#x} bytes"
            );
        }
    }

    #[test]
    fn torch_files_are_told_by_their_magic() {
        // A zip archive's local file header, and a pickle of protocol 2 (legacy `torch.save`).
        let zip = b"PK\x03\x04\x14\x00\x00\x00\x00\x00archive/data.pkl";
        let pickle = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        assert_eq!(
            CheckpointFormat::detect(zip).unwrap(),
            CheckpointFormat::Torch
        );
        assert_eq!(
            CheckpointFormat::detect(pickle).unwrap(),
            CheckpointFormat::Torch
        );
    }

    #[test]
    fn other_bytes_are_an_unknown_format() {
        for head in [
            &b"PK"[..],
            b"\x80\x09junk",
            b"\x00\x00\x00\x00\x00\x00\x00\x00{",
            b"",
        ] {
            assert!(matches!(
                CheckpointFormat::detect(head),
                Err(CheckpointError::UnknownFormat)
            ));
        }
    }
}
