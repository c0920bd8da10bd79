//! diffusers' weight files: `diffusion_pytorch_model[.fp16].safetensors`, read into a [`TorchStateDict`] so
//! that each layer takes its tensors by name and shape, and tensors nobody took are named in the error.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use burn_store::TensorSnapshot;
use safetensors::{Dtype, SafeTensors};

use crate::checkpoint::{CheckpointError, TorchStateDict};

/// The tensors of a safetensors file, f32, f16 or bf16.
pub fn read_safetensors(path: &Path) -> Result<TorchStateDict, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
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
