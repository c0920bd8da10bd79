//! Training losses: the paper's (Sound2Scene's `InfoNCE_with_L2`), and those of the default model's image
//! stages (SimCLR's NT-Xent and supervised contrastive learning for the image encoder, BigGAN's hinge loss
//! for the generator).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::layers::l2_normalise;

/// Symmetric InfoNCE whose logits are minus the Euclidean distances between L2-normalised features
/// (temperature 1): `(CE(-D, I) + CE(-D^T, I)) / 2` with `D[i, j] = ||v_i - a_j||`. Sound2Scene's loss.
pub fn info_nce_l2<B: Backend>(audio: Tensor<B, 2>, visual: Tensor<B, 2>) -> Tensor<B, 1> {
    info_nce_euclidean(l2_normalise(audio), l2_normalise(visual))
}

/// The same over the features as they are, unnormalised: Sound2Vision's loss, whose audio embeddings must
/// land on CLIP's image embeddings themselves (the diffusion model reads their length too).
pub fn info_nce_euclidean<B: Backend>(audio: Tensor<B, 2>, visual: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, d] = audio.dims();
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

/// Supervised contrastive learning (Khosla et al. 2020, `L_out` of eq. 2): `2N` projections of `N` images
/// seen twice (`first[i]` and `second[i]` are views of image `i`, of class `classes[i]`); each is pulled
/// towards every other projection of its class (its twin among them) and pushed from the rest, by cosine
/// similarity over `temperature`. Images without a label are given classes of their own: with every class
/// distinct this is NT-Xent.
pub fn supervised_contrastive<B: Backend>(
    first: Tensor<B, 2>,
    second: Tensor<B, 2>,
    classes: &[usize],
    temperature: f64,
) -> Tensor<B, 1> {
    let [n, _] = first.dims();
    assert_eq!(classes.len(), n, "one class per image");
    let z = l2_normalise(Tensor::cat(vec![first, second], 0));
    let device = z.device();
    let similarity = z.clone().matmul(z.transpose()).div_scalar(temperature);
    // An image is never its own candidate, nor its own positive.
    let self_mask: Tensor<B, 2> = Tensor::eye(2 * n, &device).mul_scalar(-1e9);
    let log_probs = log_softmax(similarity + self_mask, 1);
    let positives = positive_pairs(classes);
    let counts: Vec<f32> = positives
        .chunks(2 * n)
        .map(|row| row.iter().sum::<f32>())
        .collect();
    let positives = Tensor::<B, 2>::from_data(TensorData::new(positives, [2 * n, 2 * n]), &device);
    let counts = Tensor::<B, 1>::from_data(TensorData::new(counts, [2 * n]), &device);
    let per_anchor = (log_probs * positives).sum_dim(1).reshape([2 * n]) / counts;
    per_anchor.mean().neg()
}

/// `[2N, 2N]` row-major: 1 where two of the `2N` views (view `i` and `i + N` of image `i`) share a class and
/// are not the same view.
fn positive_pairs(classes: &[usize]) -> Vec<f32> {
    let n = classes.len();
    let class_of = |view: usize| classes[view % n];
    (0..2 * n)
        .flat_map(|i| (0..2 * n).map(move |j| (i, j)))
        .map(|(i, j)| f32::from(u8::from(i != j && class_of(i) == class_of(j))))
        .collect()
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
    fn supervised_contrastive_with_distinct_classes_is_nt_xent() {
        let device = Default::default();
        let first = Tensor::<Flex, 2>::random([6, 16], Distribution::Normal(0.0, 1.0), &device);
        let second = Tensor::<Flex, 2>::random([6, 16], Distribution::Normal(0.0, 1.0), &device);
        let supervised =
            supervised_contrastive(first.clone(), second.clone(), &[0, 1, 2, 3, 4, 5], 0.2)
                .into_scalar();
        let unsupervised = nt_xent(first, second, 0.2).into_scalar();
        assert!(
            (supervised - unsupervised).abs() < 1e-5,
            "{supervised} vs {unsupervised}"
        );
    }

    #[test]
    fn supervised_contrastive_rewards_classes_that_gather() {
        let device = Default::default();
        // Two classes of three images; each class's images near one of two orthogonal directions, or spread
        // at random.
        let mut directions = vec![0.0f32; 6 * 16];
        for image in 0..6 {
            directions[image * 16 + image / 3] = 3.0;
        }
        let gathered = Tensor::<Flex, 2>::from_data(TensorData::new(directions, [6, 16]), &device);
        let noise = || Tensor::<Flex, 2>::random([6, 16], Distribution::Normal(0.0, 0.1), &device);
        let spread = Tensor::<Flex, 2>::random([6, 16], Distribution::Normal(0.0, 1.0), &device);
        let classes = [0, 0, 0, 1, 1, 1];
        let together = supervised_contrastive(
            gathered.clone() + noise(),
            gathered + noise(),
            &classes,
            0.2,
        )
        .into_scalar();
        let apart =
            supervised_contrastive(spread.clone() + noise(), spread + noise(), &classes, 0.2)
                .into_scalar();
        assert!(together < apart, "{together} vs {apart}");
        // The best it can do when each anchor's 5 positives are as likely as one another and the 6 negatives
        // vanish: log 5.
        assert!((together - 5f32.ln()).abs() < 0.05, "{together}");
    }

    #[test]
    fn a_view_is_never_its_own_positive() {
        let pairs = positive_pairs(&[7, 7]);
        // Views 0, 1 (first views of images 0, 1) and 2, 3 (their second views), all of class 7.
        assert_eq!(
            pairs,
            vec![
                0., 1., 1., 1., 1., 0., 1., 1., 1., 1., 0., 1., 1., 1., 1., 0.
            ]
        );
        let distinct = positive_pairs(&[1, 2]);
        assert_eq!(
            distinct,
            vec![
                0., 0., 1., 0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 1., 0., 0.
            ]
        );
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
