//! Helpers for the integration tests: where the reference fixtures are, and how to compare with them.

pub mod service;

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::read_npy;

/// The root of the checkout whose tests are running.
///
/// Found from the `CARGO_MANIFEST_DIR` that cargo sets when it runs a test or bench (every crate of the
/// workspace sits one level below the root), and only without one from where this crate was compiled: a build
/// directory shared between checkouts can hold a copy of this crate compiled in another one.
pub fn checkout() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// The reference fixtures: `$S2V_FIXTURES`, else `../shared/fixtures/reference` beside the checkout.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("S2V_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout().join("../shared/fixtures/reference"));
    assert!(
        dir.join("manifest.json").is_file(),
        "reference fixtures not found at {} (set S2V_FIXTURES)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

pub fn npy(name: &str) -> ArrayD<f32> {
    read_npy(fixture(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

/// A fixture `.npy` as a flex tensor of `shape` (same number of values, e.g. `(257, 1004)` as `[1, 1, 257, 1004]`).
pub fn fixture_tensor<const D: usize>(
    name: &str,
    shape: [usize; D],
) -> burn::tensor::Tensor<burn::backend::Flex, D> {
    let values = npy(name);
    let values = values
        .as_slice()
        .unwrap_or_else(|| panic!("{name} is not in standard layout"))
        .to_vec();
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(values, shape),
        &Default::default(),
    )
}

/// The values of any float32 `.npy` file, row-major.
pub fn read_values(path: &Path) -> Vec<f32> {
    let array: ArrayD<f32> =
        read_npy(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    array.iter().copied().collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `||a - b|| / ||b||`.
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff.sqrt() / norm.sqrt()) as f32
}

pub const WAVES: [&str; 3] = ["tone_chirp_10s", "harmonic_3p7s", "clicks_160125"];

/// The largest difference between `actual` and `expected`, relative to the largest magnitude in `expected`.
pub fn max_relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let scale = expected
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    max_abs_diff(actual, expected) / scale
}

/// The tiny Stable unCLIP networks of `tests/data/unclip` laid out in `root` as a diffusers model folder
/// (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, the schedulers and the image normaliser); its path.
pub fn tiny_unclip_folder(root: &Path) -> PathBuf {
    let data = checkout().join("tests/data/unclip");
    let dir = root.join("stable-unclip");
    for (component, from) in [
        ("unet", "unet"),
        ("vae", "vae"),
        ("text_encoder", "text_encoder"),
        ("tokenizer", "tokenizer"),
        ("scheduler", "pipeline/scheduler"),
        ("image_normalizer", "pipeline/image_normalizer"),
        (
            "image_noising_scheduler",
            "pipeline/image_noising_scheduler",
        ),
    ] {
        let target = dir.join(component);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(data.join(from)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}
