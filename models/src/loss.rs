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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type B = Autodiff<Flex>;

    #[test]
    fn matched_pairs_give_a_lower_loss_than_shuffled_ones() {
        let device = Default::default();
        let visual = Tensor::<Flex, 2>::random([6, 32], Distribution::Normal(0.0, 1.0), &device);
        let noise = Tensor::<Flex, 2>::random([6, 32], Distribution::Normal(0.0, 0.1), &device);
        let matched = info_nce_l2(visual.clone() + noise.clone(), visual.clone()).into_scalar();
        let shuffled = info_nce_l2(visual.clone().flip([0]) + noise, visual).into_scalar();
        assert!(matched < shuffled, "{matched} vs {shuffled}");
    }

    #[test]
    fn gradient_steps_on_the_audio_side_lower_the_loss() {
        let device = Default::default();
        let visual = Tensor::<B, 2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
        let mut audio =
            Tensor::<B, 2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let first = info_nce_l2(audio.clone(), visual.clone()).into_scalar();
        for _ in 0..50 {
            let loss = info_nce_l2(audio.clone(), visual.clone());
            let grads = loss.backward();
            let grad = audio
                .grad(&grads)
                .expect("the audio features receive a gradient");
            assert!(
                grad.clone()
                    .into_data()
                    .into_vec::<f32>()
                    .unwrap()
                    .iter()
                    .all(|g| g.is_finite())
            );
            audio = Tensor::from_inner(audio.inner() - grad * 4.0).require_grad();
        }
        let last = info_nce_l2(audio, visual).into_scalar();
        assert!(last < first - 0.3, "loss went from {first} to {last}");
    }
}
