//! The frozen image encoder's features of picture files, which the generator is conditioned on, the audio
//! encoder is trained towards and the evaluation measures, kept on disk beside the data set.
//!
//! Features are computed from the picture files at the encoder's own input size: a pretrained encoder reads
//! larger pictures than the generator makes (EfficientNet-Lite2 260 px, the generator 64 px), and holding every
//! picture at that size would take gigabytes. At that size a pass over the training pictures takes many minutes
//! on a CPU, and the trainer's stages, their resumed calls and `s2v eval` each need the same features, so each
//! one is computed once per encoder and kept in `<data>/image-features/<encoder digest>.safetensors`.
//!
//! A cached row is found by the digest of the encoder's weights and of the picture file's bytes (and whether it
//! is the mirror image), so a retrained encoder or a rebuilt picture never reads a stale row. A folder that
//! cannot be written only costs the recomputation: that is said, not an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{ModuleVisitor, Param};
use burn::nn::Linear;
use burn::prelude::*;
use s2v_models::ImageEncoder;
use s2v_models::checkpoint::write_whole;
use s2v_models::preprocess::{normalise_unit_pixels, unit_pixels};
use s2v_serving::networks::encode_rows;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::trainer::data::mirror;

/// Pictures per forward pass: bounded memory at any input size.
const BATCH: usize = 16;
/// Pictures encoded between two writes of the cache: an interrupted pass keeps most of its work.
const SAVE_EVERY: usize = 256;
/// The cache folder inside a data set.
pub const CACHE_DIR: &str = "image-features";
const FEATURES_TENSOR: &str = "features";
const KEYS_METADATA: &str = "keys";

/// An image encoder with the features it has already given, by picture. The cache holds the encoder's features
/// before any trained projection ([`ImageEncoder::backbone_forward`]), which is applied as they are read: a
/// retrained projection encodes no picture again.
pub struct FrozenFeatures<'a, B: Backend> {
    encoder: &'a ImageEncoder<B>,
    device: &'a B::Device,
    file: PathBuf,
    rows: HashMap<String, Vec<f32>>,
    /// Pictures encoded by this instance, rather than read from the cache.
    encoded: usize,
}

impl<'a, B: Backend> FrozenFeatures<'a, B> {
    /// Features of `encoder`, kept in `cache_dir` (read now where it already holds some). A cache file that
    /// cannot be read is said and replaced: it holds nothing that cannot be computed again.
    pub fn cached(encoder: &'a ImageEncoder<B>, cache_dir: &Path, device: &'a B::Device) -> Self {
        let file = cache_dir.join(format!("{}.safetensors", weights_digest(encoder)));
        let rows = match std::fs::read(&file) {
            Ok(bytes) => read_rows(&bytes, encoder.backbone_feature_dim()).unwrap_or_else(|e| {
                eprintln!(
                    "image features: the cache {} is unreadable ({e:#}); computing them again",
                    file.display()
                );
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        Self {
            encoder,
            device,
            file,
            rows,
            encoded: 0,
        }
    }

    /// How many pictures this instance has encoded, rather than read from the cache.
    pub fn encoded(&self) -> usize {
        self.encoded
    }

    /// One feature row per picture file (of its mirror image where `mirrored`), as the encoder gives them.
    pub fn of(&mut self, pictures: &[PathBuf], mirrored: bool) -> Result<Vec<Vec<f32>>> {
        let keys = pictures
            .iter()
            .map(|path| picture_key(path, mirrored))
            .collect::<Result<Vec<_>>>()?;
        let missing: Vec<usize> = (0..pictures.len())
            .filter(|&i| !self.rows.contains_key(&keys[i]))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "image features: encoding {} of {} pictures{} at {} px (the rest are cached)",
                missing.len(),
                pictures.len(),
                if mirrored { " mirrored" } else { "" },
                self.encoder.input_size()
            );
        }
        for chunk in missing.chunks(SAVE_EVERY) {
            let files: Vec<&Path> = chunk.iter().map(|&i| pictures[i].as_path()).collect();
            let features = self.encode(&files, mirrored)?;
            self.encoded += features.len();
            for (&i, row) in chunk.iter().zip(features) {
                self.rows.insert(keys[i].clone(), row);
            }
            self.save();
        }
        let rows: Vec<Vec<f32>> = keys.iter().map(|key| self.rows[key].clone()).collect();
        match self.encoder.projection() {
            Some(projection) => self.project(projection, rows),
            None => Ok(rows),
        }
    }

    fn project(&self, projection: &Linear<B>, rows: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let (count, width) = (rows.len(), self.encoder.backbone_feature_dim());
        if count == 0 {
            return Ok(rows);
        }
        let features =
            Tensor::<B, 2>::from_data(TensorData::new(rows.concat(), [count, width]), self.device);
        let projected = projection
            .forward(features)
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the projected features: {e:?}"))?;
        Ok(projected
            .chunks(projected.len() / count)
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn encode(&self, pictures: &[&Path], mirrored: bool) -> Result<Vec<Vec<f32>>> {
        let size = self.encoder.input_size();
        encode_rows::<B>(
            pictures.len(),
            [3, size, size],
            BATCH,
            self.device,
            |i| encoder_input(pictures[i], size, mirrored),
            |x| self.encoder.backbone_forward(x),
        )
    }

    /// Writes every row to the cache file, whole, through a temporary file so that a reader never sees half
    /// of one. A failure is reported and costs only the recomputation next time.
    fn save(&self) {
        if let Err(e) = write_rows(&self.file, &self.rows, self.encoder.backbone_feature_dim()) {
            eprintln!(
                "image features: not kept in {} ({e:#}); they will be computed again",
                self.file.display()
            );
        }
    }
}

/// A picture file as the encoder reads it: at `size`, ImageNet-normalised, mirrored or not.
fn encoder_input(path: &Path, size: usize, mirrored: bool) -> Result<Vec<f32>> {
    let picture = image::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut chw = unit_pixels(&picture, size).with_context(|| format!("{}", path.display()))?;
    if mirrored {
        chw = mirror(&chw, size);
    }
    normalise_unit_pixels(&mut chw);
    Ok(chw)
}

/// What a cached row is found by: the picture's bytes, and its orientation.
fn picture_key(path: &Path, mirrored: bool) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = hex(&Sha256::digest(&bytes)[..16]);
    Ok(if mirrored {
        format!("{digest}-mirrored")
    } else {
        digest
    })
}

/// The digest of an encoder's input size and every weight and buffer but a trained projection's, in module
/// order: equal for the same network however it was loaded, different after any change to what the cached
/// features depend on.
pub fn weights_digest<B: Backend>(encoder: &ImageEncoder<B>) -> String {
    struct Hashing(Sha256);
    impl<B: Backend> ModuleVisitor<B> for Hashing {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            for dim in tensor.dims() {
                self.0.update((dim as u64).to_le_bytes());
            }
            let data = tensor.into_data().convert::<f32>();
            self.0.update(data.as_bytes());
        }
    }
    let mut hashing = Hashing(Sha256::new());
    hashing
        .0
        .update((encoder.input_size() as u64).to_le_bytes());
    encoder.visit_backbone(&mut hashing);
    hex(&hashing.0.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_rows(bytes: &[u8], dim: usize) -> Result<HashMap<String, Vec<f32>>> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)?;
    let keys: Vec<String> = serde_json::from_str(
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(KEYS_METADATA))
            .context("no picture keys")?,
    )?;
    let tensors = SafeTensors::deserialize(bytes)?;
    let features = tensors.tensor(FEATURES_TENSOR)?;
    anyhow::ensure!(
        features.dtype() == Dtype::F32 && features.shape() == [keys.len(), dim],
        "the features are {:?} {:?}, not F32 [{}, {dim}]",
        features.dtype(),
        features.shape(),
        keys.len()
    );
    let values: Vec<f32> = features
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(keys
        .into_iter()
        .zip(values.chunks(dim.max(1)).map(<[f32]>::to_vec))
        .collect())
}

fn write_rows(file: &Path, rows: &HashMap<String, Vec<f32>>, dim: usize) -> Result<()> {
    let mut keys: Vec<&String> = rows.keys().collect();
    keys.sort();
    let bytes: Vec<u8> = keys
        .iter()
        .flat_map(|key| rows[*key].iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let view = TensorView::new(Dtype::F32, vec![keys.len(), dim], &bytes)?;
    let metadata = HashMap::from([(KEYS_METADATA.to_string(), serde_json::to_string(&keys)?)]);
    let serialised = safetensors::serialize([(FEATURES_TENSOR, view)], Some(metadata))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_whole(file, |partial| std::fs::write(partial, serialised))?;
    Ok(())
}
