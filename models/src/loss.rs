//! Training losses: the paper's (Sound2Scene's `InfoNCE_with_L2`), and those of the default model's image
//! stages (SimCLR's NT-Xent for the image encoder, BigGAN's hinge loss for the generator).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::layers::l2_normalise;

/// Symmetric InfoNCE whose logits are minus the Euclidean distances between L2-normalised features
/// (temperature 1): `(CE(-D, I) + CE(-D^T, I)) / 2` with `D[i, j] = ||v_i - a_j||`.
pub fn info_nce_l2<B: Backend>(audio: Tensor<B, 2>, visual: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = audio.dims();
    let audio = l2_normalise(audio);
    let visual = l2_normalise(visual);
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

/// SimCLR's NT-Xent: `2N` projections of `N` images seen twice (`first[i]` and `second[i]` are the same image);
/// each must pick its twin among the other `2N - 1` by cosine similarity over `temperature`.
pub fn nt_xent<B: Backend>(
    first: Tensor<B, 2>,
    second: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let [n, _] = first.dims();
    let z = l2_normalise(Tensor::cat(vec![first, second], 0));
    let device = z.device();
    let similarity = z.clone().matmul(z.transpose()).div_scalar(temperature);
    // An image is never its own candidate.
    let self_mask: Tensor<B, 2> = Tensor::eye(2 * n, &device).mul_scalar(-1e9);
    let log_probs = log_softmax(similarity + self_mask, 1);
    // Row i's twin is i + n (and row i + n's is i): the diagonals of the two off-diagonal blocks.
    let first_twins = log_probs.clone().slice([0..n, n..2 * n]).slice_diag();
    let second_twins = log_probs.slice([n..2 * n, 0..n]).slice_diag();
    (first_twins.sum() + second_twins.sum())
        .neg()
        .div_scalar((2 * n) as f64)
}

/// BigGAN's hinge losses: the discriminator's on real and generated scores, and the generator's.
pub fn hinge_discriminator<B: Backend>(real: Tensor<B, 1>, fake: Tensor<B, 1>) -> Tensor<B, 1> {
    burn::tensor::activation::relu(real.neg().add_scalar(1.0)).mean()
        + burn::tensor::activation::relu(fake.add_scalar(1.0)).mean()
}

pub fn hinge_generator<B: Backend>(fake: Tensor<B, 1>) -> Tensor<B, 1> {
    fake.mean().neg()
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
    fn nt_xent_prefers_views_of_the_same_image() {
        let device = Default::default();
        let images = Tensor::<Flex, 2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
        let noise = Tensor::<Flex, 2>::random([8, 16], Distribution::Normal(0.0, 0.1), &device);
        let twins = nt_xent(images.clone(), images.clone() + noise.clone(), 0.5).into_scalar();
        let strangers = nt_xent(images.clone(), images.flip([0]) + noise, 0.5).into_scalar();
        assert!(twins < strangers, "{twins} vs {strangers}");
        // Chance level: every one of the 2N - 1 candidates equally likely.
        let same = Tensor::<Flex, 2>::ones([8, 16], &device);
        let chance = nt_xent(same.clone(), same, 0.5).into_scalar();
        assert!((chance - 15f32.ln()).abs() < 1e-4, "{chance}");
    }

    #[test]
    fn hinge_losses_vanish_beyond_the_margin() {
        let device = Default::default();
        let real = Tensor::<Flex, 1>::from_floats([2.0, 1.5], &device);
        let fake = Tensor::<Flex, 1>::from_floats([-1.0, -3.0], &device);
        assert_eq!(
            hinge_discriminator(real.clone(), fake.clone()).into_scalar(),
            0.0
        );
        assert_eq!(hinge_discriminator(fake.clone(), real).into_scalar(), 5.75);
        assert_eq!(hinge_generator(fake).into_scalar(), 2.0);
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
