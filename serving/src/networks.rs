//! Loading the networks a process serves, and running one over many inputs in batches.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use s2v_models::unclip::convert::ConvertedUnclip;
use s2v_models::{FromTorch, load_checkpoint};
use s2v_shared::wire::ModelInfo;
use sha2::{Digest, Sha256};

/// A network from a checkpoint file (PyTorch or s2v format), or the embedded default model's when `None`.
pub fn load_network<B: Backend, N: FromTorch<B>>(
    checkpoint: Option<&Path>,
    device: &B::Device,
) -> anyhow::Result<N> {
    match checkpoint {
        Some(path) => load_checkpoint::<B, N>(path, device)
            .with_context(|| format!("cannot load the {} from {}", N::KIND, path.display())),
        None => s2v_models::default_model::load::<B, N>(device)
            .with_context(|| format!("cannot load the default model's {}", N::KIND)),
    }
}

/// The model a generator's images are recorded under: its file's name (or the default model's id), and the
/// start of the weights' SHA-256 as the version.
pub fn generator_model_info(checkpoint: Option<&Path>) -> anyhow::Result<ModelInfo> {
    let (id, bytes) = match checkpoint {
        Some(path) => (
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("generator")
                .to_string(),
            Cow::Owned(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
        ),
        None => (
            s2v_models::default_model::MODEL_ID.to_string(),
            Cow::Borrowed(s2v_models::default_model::GENERATOR),
        ),
    };
    Ok(ModelInfo {
        id,
        version: hex::encode(&Sha256::digest(&bytes)[..6]),
    })
}

/// What a converted diffusion model's images are recorded under: its folder's name, and the first 12 hex
/// digits of the digest its conversion wrote.
pub fn diffusion_model_info(model: &ConvertedUnclip) -> ModelInfo {
    ModelInfo {
        id: model.name().to_string(),
        version: model.manifest.content_digest.chars().take(12).collect(),
    }
}

/// A network's output rows for `rows` inputs of `input_shape`, each made by `input_row` only when its batch of
/// `batch` rows is run (so a large set is never held in memory as inputs).
pub fn encode_rows<B: Backend>(
    rows: usize,
    input_shape: [usize; 3],
    batch: usize,
    device: &B::Device,
    input_row: impl Fn(usize) -> anyhow::Result<Vec<f32>>,
    forward: impl Fn(Tensor<B, 4>) -> Tensor<B, 2>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(rows);
    for start in (0..rows).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(rows);
        let mut data = Vec::new();
        for row in start..end {
            data.extend(input_row(row)?);
        }
        let [c, h, w] = input_shape;
        let x = Tensor::<B, 4>::from_data(TensorData::new(data, [end - start, c, h, w]), device);
        let y = forward(x)
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the network's output: {e:?}"))?;
        let dim = y.len() / (end - start);
        out.extend(y.chunks(dim).map(<[f32]>::to_vec));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_generator_has_a_stable_id_and_a_version_of_its_bytes() {
        let info = generator_model_info(None).unwrap();
        assert_eq!(info.id, s2v_models::default_model::MODEL_ID);
        assert_eq!(info.version.len(), 12);
        let dir = std::env::temp_dir().join(format!("s2v-model-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mine.safetensors");
        std::fs::write(&file, b"other bytes").unwrap();
        let other = generator_model_info(Some(&file)).unwrap();
        assert_eq!(other.id, "mine");
        assert_ne!(other.version, info.version);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
