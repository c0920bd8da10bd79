//! Reading PyTorch state dicts with burn-store, with the checks that make a wrong checkpoint fail loudly.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

use super::{CheckpointError, CheckpointFormat, load_native};
use crate::{NetworkKind, NetworkModule};

/// A network that imports the authors' PyTorch state dicts.
pub trait FromTorch<B: Backend>: NetworkModule<B> {
    fn from_torch(state_dict: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError>;
}

/// Loads a network from either a PyTorch checkpoint or the project's own format, told apart by the file's
/// first bytes.
pub fn load_checkpoint<B: Backend, N: FromTorch<B>>(
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

impl NetworkKind {
    /// Tells the network from the tensor names of a PyTorch state dict.
    pub fn detect(sd: &TorchStateDict) -> Option<Self> {
        if sd.contains("shared_feat.weight") || sd.contains("blocks.0.0.conv1.weight") {
            Some(Self::Generator)
        } else if sd.contains("audnet.conv1.weight")
            || sd.contains("layer1.0.conv2.weight") && !sd.contains("layer1.0.conv3.weight")
        {
            Some(Self::AudioEncoder)
        } else if sd.contains("layer1.0.conv3.weight")
            || crate::image_encoder::is_efficientnet_lite(sd)
        {
            Some(Self::ImageEncoder)
        } else {
            None
        }
    }
}

/// Containers that training scripts wrap a state dict in (`{"state_dict": ...}`, `DataParallel`'s `module.`).
const WRAPPER_PREFIXES: [&str; 4] = ["state_dict.", "model_state_dict.", "model.", "module."];

/// A PyTorch state dict, read lazily: a tensor's data is converted only when a layer takes it.
///
/// Layers `take` the tensors they need with the shape they expect; [`TorchStateDict::finish`] then fails on
/// any tensor nobody took, so a checkpoint of another network is never half-loaded.
pub struct TorchStateDict {
    network: &'static str,
    tensors: HashMap<String, TensorSnapshot>,
    taken: BTreeSet<String>,
    /// Make up every tensor a layer asks for instead of reading it (see [`TorchStateDict::synthetic`]).
    synthetic: Option<SyntheticFill>,
}

/// What a synthetic state dict fills its tensors with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SyntheticFill {
    Zeros,
    /// Normal values of this standard deviation, seeded by the tensor's name.
    Random {
        std: f32,
        seed: u64,
    },
}

impl TorchStateDict {
    /// Reads a `torch.save` file: a plain state dict, or one wrapped in `state_dict` / `module.`.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let torch_error = |e: &dyn std::fmt::Display| CheckpointError::Torch {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        Ok(Self::from_tensors(
            read_torch_tensors(path).map_err(|e| torch_error(&e))?,
        ))
    }

    /// Wraps tensors already read (e.g. by `burn_store::pytorch::PytorchReader`), stripping wrapper prefixes.
    pub fn from_tensors(mut tensors: HashMap<String, TensorSnapshot>) -> Self {
        for prefix in WRAPPER_PREFIXES {
            if tensors.keys().any(|k| k.starts_with(prefix)) {
                tensors = tensors
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v)))
                    .collect();
            }
        }
        Self {
            network: "network",
            tensors,
            taken: BTreeSet::new(),
            synthetic: None,
        }
    }

    /// A state dict that makes up each tensor a layer takes, with the shape the layer asks for: a network of
    /// any configuration, such as the published sizes, without its weights (for shapes, parameter counts
    /// and benchmarks). Every name is present; [`TorchStateDict::finish`] finds nothing left over.
    pub fn synthetic(network: &'static str, fill: SyntheticFill) -> Self {
        Self {
            network,
            tensors: HashMap::new(),
            taken: BTreeSet::new(),
            synthetic: Some(fill),
        }
    }

    /// Names the network being loaded (for error messages) and strips its own key prefix, such as Sound2Scene's
    /// `audnet.`, where every tensor carries it.
    pub fn for_network(mut self, network: &'static str, prefix: &str) -> Self {
        self.network = network;
        if !prefix.is_empty()
            && !self.tensors.is_empty()
            && self.tensors.keys().all(|k| k.starts_with(prefix))
        {
            self.tensors = self
                .tensors
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
        self
    }

    pub fn network(&self) -> &'static str {
        self.network
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of a tensor, for inferring a configuration before anything is loaded.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, CheckpointError> {
        self.tensors
            .get(name)
            .map(|t| t.shape.to_vec())
            .ok_or_else(|| CheckpointError::MissingTensor {
                network: self.network,
                tensor: name.to_string(),
            })
    }

    /// Takes a tensor's values as f32 after checking its shape and that every value is finite.
    pub fn take_values(
        &mut self,
        name: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>, CheckpointError> {
        if let Some(fill) = self.synthetic {
            self.taken.insert(name.to_string());
            return Ok(synthetic_values(fill, name, expected.iter().product()));
        }
        let found = self.shape(name)?;
        // PyTorch stores 0-d tensors (the attention gain) with shape []; accept [1] for them and vice versa.
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let same =
            found == expected || (numel(&found) == 1 && numel(expected) == 1 && found.len() <= 1);
        if !same {
            return Err(CheckpointError::ShapeMismatch {
                network: self.network,
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found,
            });
        }
        let snapshot = &self.tensors[name];
        let bad = |message: String| CheckpointError::BadData {
            tensor: name.to_string(),
            message,
        };
        if !matches!(
            snapshot.dtype,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(bad(format!("unsupported dtype {:?}", snapshot.dtype)));
        }
        let data = snapshot
            .to_data()
            .map_err(|e| bad(e.to_string()))?
            .convert::<f32>();
        let values = data.into_vec::<f32>().map_err(|e| bad(format!("{e:?}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(CheckpointError::NonFinite {
                tensor: name.to_string(),
            });
        }
        self.taken.insert(name.to_string());
        Ok(values)
    }

    /// Takes a tensor onto a device.
    pub fn take<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        expected: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, CheckpointError> {
        let values = self.take_values(name, &expected)?;
        Ok(Tensor::from_data(TensorData::new(values, expected), device))
    }

    /// Fails if any tensor was neither taken nor matched by `ignored` (the tensors the reference ignores too).
    pub fn finish(self, ignored: impl Fn(&str) -> bool) -> Result<(), CheckpointError> {
        let mut unused: Vec<String> = self
            .tensors
            .into_keys()
            .filter(|k| !self.taken.contains(k) && !ignored(k))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(CheckpointError::UnexpectedTensors {
            network: self.network,
            tensors: unused,
        })
    }
}

fn synthetic_values(fill: SyntheticFill, name: &str, count: usize) -> Vec<f32> {
    match fill {
        SyntheticFill::Zeros => vec![0.0; count],
        SyntheticFill::Random { std, seed } => {
            use rand::SeedableRng;
            use rand_distr::{Distribution, StandardNormal};
            // FNV-1a: a hash that stays the same across Rust releases, so seeded weights do too.
            let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ name_hash);
            (0..count)
                .map(|_| {
                    std * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng)
                })
                .collect()
        }
    }
}

/// The tensors of a `torch.save` file, as burn-store reads them (nested dictionaries joined with dots).
pub fn read_torch_tensors(path: &Path) -> Result<HashMap<String, TensorSnapshot>, String> {
    // burn-store's pickle reader may panic on malformed input; a bad file must be an error, not a crash.
    std::panic::catch_unwind(|| PytorchReader::new(path))
        .map_err(|_| "the file is malformed".to_string())?
        .map(PytorchReader::into_tensors)
        .map_err(|e| e.to_string())
}

/// `num_batches_tracked` counts training steps; eval-mode batch norm never reads it.
pub fn is_batch_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn snapshot(values: Vec<f32>, shape: Vec<usize>) -> TensorSnapshot {
        TensorSnapshot::from_data(
            TensorData::new(values, shape),
            vec!["x".into()],
            vec![],
            Default::default(),
        )
    }

    fn dict(entries: &[(&str, Vec<f32>, Vec<usize>)]) -> TorchStateDict {
        TorchStateDict::from_tensors(
            entries
                .iter()
                .map(|(k, v, s)| (k.to_string(), snapshot(v.clone(), s.clone())))
                .collect(),
        )
    }

    #[test]
    fn wrappers_and_network_prefixes_are_stripped() {
        let sd = dict(&[("state_dict.module.audnet.fc.bias", vec![1.0], vec![1])])
            .for_network("audio encoder", "audnet.");
        assert!(sd.contains("fc.bias"));
    }

    #[test]
    fn shape_mismatch_names_the_tensor_and_both_shapes() {
        let mut sd =
            dict(&[("fc.weight", vec![0.0; 6], vec![2, 3])]).for_network("audio encoder", "");
        let err = sd
            .take::<Flex, 2>("fc.weight", [3, 2], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fc.weight") && err.contains("[2, 3]") && err.contains("[3, 2]"),
            "{err}"
        );
    }

    #[test]
    fn nan_and_leftovers_are_errors() {
        let mut sd = dict(&[
            ("a", vec![f32::NAN], vec![1]),
            ("b", vec![0.0], vec![1]),
            ("c.num_batches_tracked", vec![0.0], vec![]),
        ]);
        assert!(matches!(
            sd.take_values("a", &[1]),
            Err(CheckpointError::NonFinite { .. })
        ));
        let err = sd.finish(is_batch_counter).unwrap_err().to_string();
        assert!(err.contains("a, b"), "{err}");
    }

    #[test]
    fn missing_tensor_is_named() {
        let sd = dict(&[]).for_network("generator", "");
        let err = sd.shape("linear.weight").unwrap_err().to_string();
        assert!(
            err.contains("linear.weight") && err.contains("generator"),
            "{err}"
        );
    }
}
