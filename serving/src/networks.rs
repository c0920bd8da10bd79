//! Loading the networks a process serves, and running one over many inputs in batches.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
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

/// The model a converted diffusion folder's images are recorded under: the folder's name, and the start of
/// the SHA-256 of every file in it (by relative path, in order) as the version.
pub fn diffusion_model_info(dir: &Path) -> anyhow::Result<ModelInfo> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut digest = Sha256::new();
    for relative in &files {
        let path = dir.join(relative);
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        digest.update(relative.to_string_lossy().as_bytes());
        std::io::copy(&mut file, &mut digest)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(ModelInfo {
        id: dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("diffusion")
            .to_string(),
        version: hex::encode(&digest.finalize()[..6]),
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
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
