//! Batch norm over `[N, C, H, W]`, computed in the shapes the CPU backend has fast paths for.
//!
//! burn's `BatchNorm::forward` and a plain `x - mean.reshape([1, C, 1, 1])` broadcast a per-channel vector over
//! the batch *and* the pixels. burn-flex's SIMD broadcast kernels cover a vector shared by every row, or one
//! scalar per contiguous row; `[1, C, 1, 1]` against `[N, C, H, W]` is neither, so every such product (and its
//! gradient) fell back to a scalar strided iterator, as did the `swap_dims(0, 1)` copy used for the statistics.
//! That was most of a training step on the CPU. Here per-channel vectors are first repeated to `[N, C, 1, 1]`
//! (N x C values, cheap), which is "one scalar per row of H x W", and statistics are reduced over the
//! contiguous last axis first. Same arithmetic, same results up to rounding, on every backend.

use burn::module::RunningState;
use burn::nn::BatchNorm;
use burn::prelude::*;

/// Batch norm's epsilon in every network here: PyTorch's default, which torchvision's ResNets and BigGAN keep.
pub const BN_EPS: f64 = 1e-5;

/// Per-channel mean and biased variance of `x` over batch and pixels (`[C]` each), and how many values each
/// channel has.
fn channel_statistics<B: Backend>(x: &Tensor<B, 4>) -> (Tensor<B, 1>, Tensor<B, 1>, usize) {
    let [n, c, h, w] = x.dims();
    let count = n * h * w;
    let rows = x.clone().reshape([n, c, h * w]);
    let mean = rows.clone().sum_dim(2).sum_dim(0).div_scalar(count as f64);
    let centred = rows - mean.clone().repeat_dim(0, n);
    let var = centred
        .square()
        .sum_dim(2)
        .sum_dim(0)
        .div_scalar(count as f64);
    (mean.reshape([c]), var.reshape([c]), count)
}

/// A per-channel vector `[C]` shaped `[N, C, 1, 1]` for broadcasting over an `[N, C, H, W]` tensor.
pub fn per_channel<B: Backend>(values: Tensor<B, 1>, batch: usize) -> Tensor<B, 4> {
    let [c] = values.dims();
    values.reshape([1, c, 1, 1]).repeat_dim(0, batch)
}

/// `stored <- (1 - momentum) * stored + momentum * batch`, outside the autodiff graph (PyTorch's running
/// statistics).
fn fold_statistics<B: Backend>(
    stored: &RunningState<Tensor<B, 1>>,
    batch: &Tensor<B, 1>,
    momentum: f64,
) {
    let folded = stored.value_sync().mul_scalar(1.0 - momentum)
        + batch.clone().detach().mul_scalar(momentum);
    stored.update(folded.detach());
}

/// The statistics a batch norm normalises `x` with, as burn's `BatchNorm` decides: under autodiff the batch's
/// (folded into the running ones with `momentum`), otherwise the running ones. The batch normalises with its
/// biased variance but folds in the unbiased one, as PyTorch's batch norm (and so IC-GAN's) does; burn's
/// `BatchNorm` folds the biased one.
pub fn normalising_statistics<B: Backend>(
    x: &Tensor<B, 4>,
    running_mean: &RunningState<Tensor<B, 1>>,
    running_var: &RunningState<Tensor<B, 1>>,
    momentum: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    if B::ad_enabled(&x.device()) {
        let (mean, var, count) = channel_statistics(x);
        fold_statistics(running_mean, &mean, momentum);
        let unbiased = var
            .clone()
            .mul_scalar(count as f64 / (count.max(2) - 1) as f64);
        fold_statistics(running_var, &unbiased, momentum);
        (mean, var)
    } else {
        (running_mean.value(), running_var.value())
    }
}

/// `bn.forward(x)` for `[N, C, H, W]`.
pub fn apply_batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let n = x.dims()[0];
    let (mean, var) = normalising_statistics(&x, &bn.running_mean, &bn.running_var, bn.momentum);
    let (scale, shift) = affine(bn, mean, var);
    x * per_channel(scale, n) + per_channel(shift, n)
}

/// The per-channel `(scale, shift)` a batch norm applies at inference, from its stored statistics.
pub fn stored_affine<B: Backend>(bn: &BatchNorm<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    affine(bn, bn.running_mean.value(), bn.running_var.value())
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, as x * scale + shift: two passes over x, not four.
fn affine<B: Backend>(
    bn: &BatchNorm<B>,
    mean: Tensor<B, 1>,
    var: Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - mean * scale.clone();
    (scale, shift)
}

// The tests compare with burn's `BatchNorm` itself, which clippy.toml disallows elsewhere.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    type Ad = Autodiff<Flex>;
    type Forward<'a> = &'a dyn Fn(&BatchNorm<Ad>, Tensor<Ad, 4>) -> Tensor<Ad, 4>;

    /// A batch norm with arbitrary parameters and statistics, fresh each call: clones of one module would share
    /// its running statistics.
    fn arbitrary_bn<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
        let vector = |offset: f32| {
            let values = (0..channels)
                .map(|i| offset + 0.3 * i as f32)
                .collect::<Vec<_>>();
            Tensor::<B, 1>::from_floats(values.as_slice(), device)
        };
        let mut bn = BatchNormConfig::new(channels).init::<B>(device);
        bn.gamma = burn::module::Param::from_tensor(vector(0.6));
        bn.beta = burn::module::Param::from_tensor(vector(-0.5));
        bn.running_mean = burn::module::RunningState::new(vector(-0.2));
        bn.running_var = burn::module::RunningState::new(vector(0.7));
        bn
    }

    /// Training: output, input gradient, parameter gradients and the running mean match burn's own
    /// `BatchNorm`; the running variance folds in the unbiased batch variance, as PyTorch's does.
    #[test]
    fn training_matches_burns_batch_norm() {
        let device = Default::default();
        let x = Tensor::<Ad, 4>::random([3, 5, 4, 6], Distribution::Normal(0.5, 2.0), &device);
        let weights = Tensor::<Ad, 4>::random([3, 5, 4, 6], Distribution::Default, &device);

        let run = |forward: Forward| {
            let bn = arbitrary_bn::<Ad>(5, &device);
            let x = x.clone().detach().require_grad();
            let y = forward(&bn, x.clone());
            let grads = (y.clone() * weights.clone()).sum().backward();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                bn.gamma.grad(&grads).unwrap(),
                bn.beta.grad(&grads).unwrap(),
                bn.valid(),
            )
        };
        let (y, dx, dgamma, dbeta, after) = run(&|bn, x| apply_batch_norm(bn, x));
        let (y_ref, dx_ref, dgamma_ref, dbeta_ref, after_ref) = run(&|bn, x| bn.forward(x));

        let tolerance = Tolerance::<f32>::absolute(1e-5);
        y.into_data()
            .assert_approx_eq(&y_ref.into_data(), tolerance);
        dx.into_data()
            .assert_approx_eq(&dx_ref.into_data(), tolerance);
        dgamma
            .into_data()
            .assert_approx_eq(&dgamma_ref.into_data(), tolerance);
        dbeta
            .into_data()
            .assert_approx_eq(&dbeta_ref.into_data(), tolerance);
        after
            .running_mean
            .value()
            .into_data()
            .assert_approx_eq(&after_ref.running_mean.value().into_data(), tolerance);
        let momentum = after.momentum;
        let per_channel = x.inner().swap_dims(0, 1).reshape([5, -1]);
        let unbiased: Tensor<Flex, 1> = per_channel.var(1).reshape([5]);
        let expected = arbitrary_bn::<Flex>(5, &device)
            .running_var
            .value()
            .mul_scalar(1.0 - momentum)
            + unbiased.mul_scalar(momentum);
        after
            .running_var
            .value()
            .into_data()
            .assert_approx_eq(&expected.into_data(), tolerance);
    }

    #[test]
    fn inference_uses_the_running_statistics() {
        let device = Default::default();
        let bn = arbitrary_bn::<Flex>(4, &device);
        let x = Tensor::<Flex, 4>::random([2, 4, 3, 5], Distribution::Normal(0.0, 3.0), &device);
        apply_batch_norm(&bn, x.clone())
            .into_data()
            .assert_approx_eq(&bn.forward(x).into_data(), Tolerance::<f32>::absolute(1e-5));
    }
}
