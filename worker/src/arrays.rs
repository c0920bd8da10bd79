//! `.npy` files (little-endian float32, through ndarray-npy) with shape checks that say what was expected.

use std::path::Path;

use anyhow::{Context, bail};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ndarray_npy::{ViewNpyExt, write_npy};

/// A float32 array read from `.npy`, flattened row-major with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        // A view checks the header's shape against the bytes actually present before anything is allocated
        // (reading directly would allocate whatever a corrupt header claims). Views need 4-byte alignment.
        let mut aligned = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut aligned)[..bytes.len()].copy_from_slice(&bytes);
        let view =
            ArrayViewD::<f32>::view_npy(&bytemuck::cast_slice::<u32, u8>(&aligned)[..bytes.len()])
                .with_context(|| {
                    format!(
                        "cannot read {} as a little-endian float32 .npy file",
                        path.display()
                    )
                })?;
        let shape = view.shape().to_vec();
        let data = view.iter().copied().collect();
        let array = Self { shape, data };
        if array.data.iter().any(|v| !v.is_finite()) {
            bail!(
                "{} holds non-finite values (NaN or infinity)",
                path.display()
            );
        }
        Ok(array)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let array = ArrayD::from_shape_vec(IxDyn(&self.shape), self.data.clone())?;
        write_npy(path, &array).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `N x width` rows; a single vector of `width` values counts as one row.
    pub fn read_rows(path: &Path, width: usize, what: &str) -> anyhow::Result<Self> {
        let mut array = Self::read(path)?;
        match array.shape[..] {
            [w] if w == width => array.shape = vec![1, width],
            [n, w] if w == width && n > 0 => {}
            _ => bail!(
                "{} has shape {:?}; {what} must be N x {width} (or {width})",
                path.display(),
                array.shape
            ),
        }
        Ok(array)
    }

    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }
}
