//! diffusers' weight files: `diffusion_pytorch_model[.fp16].safetensors`, read into a [`TorchStateDict`] so
//! that each layer takes its tensors by name and shape, and tensors nobody took are named in the error.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use burn_store::TensorSnapshot;
use safetensors::{Dtype, SafeTensors};

use crate::checkpoint::{CheckpointError, TorchStateDict, write_whole};

/// A text file (a component's `config.json`), with its path in the error.
pub fn read_text(path: &Path) -> Result<String, CheckpointError> {
    std::fs::read_to_string(path).map_err(|e| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A weight file's bytes, memory-mapped: the file's pages are read as tensors are copied out of them and can
/// be dropped by the kernel, so loading a model holds its weights once rather than twice (the published
/// UNet's file is 1.7 GB in f16).
fn map_file(path: &Path) -> Result<memmap2::Mmap, CheckpointError> {
    let io = |e: std::io::Error| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read while the tensors are copied out and dropped right after; a weight file
    // rewritten meanwhile by another process is the one case it does not cover, as with any reader.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io)
}

/// The tensors of a safetensors file, f32, f16 or bf16.
pub fn read_safetensors(path: &Path) -> Result<TorchStateDict, CheckpointError> {
    let bytes = map_file(path)?;
    safetensors_from_bytes(&bytes).map_err(|message| CheckpointError::Safetensors {
        path: path.display().to_string(),
        message,
    })
}

/// The tensors of safetensors bytes.
pub fn safetensors_from_bytes(bytes: &[u8]) -> Result<TorchStateDict, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => burn::tensor::DType::F32,
            Dtype::F16 => burn::tensor::DType::F16,
            Dtype::BF16 => burn::tensor::DType::BF16,
            other => return Err(format!("{name}: unsupported dtype {other:?}")),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        let snapshot =
            TensorSnapshot::from_data(data, vec![name.clone()], vec![], Default::default());
        tensors.insert(name, snapshot);
    }
    Ok(TorchStateDict::from_tensors(tensors))
}

/// Rewrites the tensors of `source` that `keep` names as f16 in `target` (written whole), refusing a value
/// that f16 cannot hold. Returns how many tensors were written.
pub fn write_f16_safetensors(
    source: &Path,
    keep: impl Fn(&str) -> bool,
    target: &Path,
) -> Result<usize, CheckpointError> {
    let bytes = map_file(source)?;
    let parse = |message: String| CheckpointError::Safetensors {
        path: source.display().to_string(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| parse(e.to_string()))?;
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if !keep(&name) {
            continue;
        }
        let dtype = match view.dtype() {
            Dtype::F32 => burn::tensor::DType::F32,
            Dtype::F16 => burn::tensor::DType::F16,
            Dtype::BF16 => burn::tensor::DType::BF16,
            other => return Err(parse(format!("{name}: unsupported dtype {other:?}"))),
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        let half = data.convert::<burn::tensor::f16>();
        let overflow = half
            .as_slice::<burn::tensor::f16>()
            .map_err(|e| parse(format!("{name}: {e:?}")))?
            .iter()
            .any(|v| !v.is_finite());
        if overflow {
            return Err(CheckpointError::BadData {
                tensor: name,
                message: "a value is beyond f16's range (or not finite)".into(),
            });
        }
        converted.push((name, view.shape().to_vec(), half.into_bytes().to_vec()));
    }
    let views = converted
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F16, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| parse(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    write_whole(target, |partial| {
        safetensors::serialize_to_file(views, None, partial)
    })?;
    Ok(converted.len())
}

/// The weight file of a diffusers component folder: `{stem}.fp16.safetensors` when `fp16` is asked for,
/// else `{stem}.safetensors`, or the fp16 variant where that is the only one (repositories published for
/// half precision ship only it).
pub fn weights_file(dir: &Path, stem: &str, fp16: bool) -> std::path::PathBuf {
    let full = dir.join(format!("{stem}.safetensors"));
    let half = dir.join(format!("{stem}.fp16.safetensors"));
    if fp16 || (!full.exists() && half.exists()) {
        half
    } else {
        full
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_cut_weight_file_is_refused_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        assert!(matches!(
            read_safetensors(&missing),
            Err(CheckpointError::Io { path, .. }) if path.ends_with("missing.safetensors")
        ));

        let empty = dir.path().join("empty.safetensors");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            read_safetensors(&empty),
            Err(CheckpointError::Safetensors { path, .. }) if path.ends_with("empty.safetensors")
        ));

        // A whole file reads back; the same file cut short is refused.
        let values = [1.5f32, -2.0, 0.25];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![3], &bytes).unwrap();
        let whole = dir.path().join("whole.safetensors");
        safetensors::serialize_to_file([("w", view)], None, &whole).unwrap();
        let mut sd = read_safetensors(&whole).unwrap().for_network("test", "");
        let w: Tensor<burn::backend::Flex, 1> = sd.take("w", [3], &Default::default()).unwrap();
        assert_eq!(w.into_data().to_vec::<f32>().unwrap(), values);
        let file = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &file[..file.len() - 4]).unwrap();
        assert!(matches!(
            read_safetensors(&cut),
            Err(CheckpointError::Safetensors { path, .. }) if path.ends_with("cut.safetensors")
        ));
    }
}
