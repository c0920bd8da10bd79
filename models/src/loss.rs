//! The paper's training loss: Sound2Scene's `InfoNCE_with_L2`.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::layers::l2_normalize;

/// Symmetric InfoNCE whose logits are minus the Euclidean distances between L2-normalised features
/// (temperature 1): `(CE(-D, I) + CE(-D^T, I)) / 2` with `D[i, j] = ||v_i - a_j||`.
pub fn info_nce_l2<B: Backend>(audio: Tensor<B, 2>, visual: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = audio.dims();
    let audio = l2_normalize(audio);
    let visual = l2_normalize(visual);
    // Pairwise differences rather than the |a|^2 + |b|^2 - 2ab expansion: exact near zero distance. The tiny
    // offset keeps the square root differentiable when a pair coincides.
    let diff = visual.reshape([n, 1, d]) - audio.reshape([1, n, d]);
    let distances = diff
        .powi_scalar(2)
        .sum_dim(2)
        .reshape([n, n])
        .add_scalar(1e-12)
        .sqrt();
    let logits = distances.neg();
    let per_visual = log_softmax(logits.clone(), 1).slice_diag();
    let per_audio = log_softmax(logits, 0).slice_diag();
    (per_visual + per_audio).mean().neg().div_scalar(2.0)
}

trait Diagonal<B: Backend> {
    fn slice_diag(self) -> Tensor<B, 1>;
}

impl<B: Backend> Diagonal<B> for Tensor<B, 2> {
    /// The diagonal of a square matrix, by masking (differentiable on every backend).
    fn slice_diag(self) -> Tensor<B, 1> {
        let [n, _] = self.dims();
        let eye: Tensor<B, 2> = Tensor::eye(n, &self.device());
        (self * eye).sum_dim(1).reshape([n])
    }
}
