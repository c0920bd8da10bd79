//! The project's own checkpoint format: a safetensors file written by burn-store from the module itself, with
//! the network kind and its configuration in the metadata, so loading needs no shape inference and no Python
//! names. Weights are stored after load-time folding (spectral norm already applied). `--f16` halves the file;
//! batch-norm statistics stay f32 because running variances underflow in f16.

use std::collections::HashMap;

use burn::prelude::*;
use burn_store::{HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::CheckpointError;
use crate::NetworkModule;

const KEY_NETWORK: &str = "s2v.network";
const KEY_CONFIG: &str = "s2v.config";
const KEY_VERSION: &str = "s2v.format_version";
const KEY_PRECISION: &str = "s2v.precision";
const FORMAT_VERSION: &str = "1";

/// What the metadata of a native checkpoint says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeHeader {
    pub network: String,
    pub config_json: String,
    pub precision: String,
}

/// Reads only the header of a native checkpoint.
pub fn read_native_header(bytes: &[u8]) -> Result<NativeHeader, CheckpointError> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| CheckpointError::Native(format!("not a safetensors file: {e}")))?;
    let map: HashMap<String, String> = metadata.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        map.get(key).cloned().ok_or_else(|| {
            CheckpointError::Native(format!(
                "the safetensors metadata has no `{key}`: not a sound2vision checkpoint"
            ))
        })
    };
    let version = field(KEY_VERSION)?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Native(format!(
            "format version {version} is not supported (expected {FORMAT_VERSION})"
        )));
    }
    Ok(NativeHeader {
        network: field(KEY_NETWORK)?,
        config_json: field(KEY_CONFIG)?,
        precision: field(KEY_PRECISION)?,
    })
}

fn store_for<B: Backend, N: NetworkModule<B>>(
    module: &N,
    half: bool,
) -> Result<SafetensorsStore, CheckpointError> {
    let config = serde_json::to_string(&module.config())
        .map_err(|e| CheckpointError::Native(e.to_string()))?;
    // Skipping enum variants keeps the tensor names of a network that became one variant of an enum
    // (the ResNet image encoder) as they were.
    let store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
        .metadata(KEY_NETWORK, N::KIND.name())
        .metadata(KEY_CONFIG, config)
        .metadata(KEY_VERSION, FORMAT_VERSION)
        .metadata(KEY_PRECISION, if half { "f16" } else { "f32" });
    Ok(if half {
        store.with_to_adapter(HalfPrecisionAdapter::new())
    } else {
        store
    })
}

/// Serialises a network to the native format.
pub fn to_native_bytes<B: Backend, N: NetworkModule<B>>(
    module: &N,
    half: bool,
) -> Result<Vec<u8>, CheckpointError> {
    let mut store = store_for(module, half)?;
    module
        .save_into(&mut store)
        .map_err(|e| CheckpointError::Native(e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| CheckpointError::Native(e.to_string()))
}

/// Writes a network to a native checkpoint file (atomically: a crash never leaves half a file).
#[cfg(feature = "std")]
pub fn save_native<B: Backend, N: NetworkModule<B>>(
    module: &N,
    path: &std::path::Path,
    half: bool,
) -> Result<(), CheckpointError> {
    let bytes = to_native_bytes(module, half)?;
    super::write_whole(path, |partial| std::fs::write(partial, bytes))
}

/// Loads a network from native checkpoint bytes (also what the browser calls, with the downloaded file).
pub fn load_native<B: Backend, N: NetworkModule<B>>(
    bytes: &[u8],
    device: &B::Device,
) -> Result<N, CheckpointError> {
    let header = read_native_header(bytes)?;
    if header.network != N::KIND.name() {
        return Err(CheckpointError::WrongNetwork {
            expected: N::KIND.name(),
            found: header.network,
        });
    }
    let config: N::Config = serde_json::from_str(&header.config_json)
        .map_err(|e| CheckpointError::Native(format!("invalid {} configuration: {e}", N::KIND)))?;
    let mut module = N::init(&config, device)?;
    // The adapter turns f16 weights back into f32; an f32 file must not go through it (it would halve them).
    let store = SafetensorsStore::from_bytes(Some(bytes.to_vec())).skip_enum_variants(true);
    let mut store = match header.precision.as_str() {
        "f32" => store,
        "f16" => store.with_from_adapter(HalfPrecisionAdapter::new()),
        other => {
            return Err(CheckpointError::Native(format!(
                "unknown precision `{other}`"
            )));
        }
    };
    module
        .load_from(&mut store)
        .map_err(|e| CheckpointError::Native(e.to_string()))?;
    Ok(module)
}
