//! Building burn layers from PyTorch tensors, and the layers PyTorch has that burn does not.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;

use crate::checkpoint::{CheckpointError, TorchStateDict};

/// `nn.Conv2d` from `{prefix}.weight` (and `{prefix}.bias`). `shape` is `[out, in, k, k]`.
pub fn conv2d<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    shape: [usize; 4],
    stride: usize,
    padding: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Conv2d<B>, CheckpointError> {
    let weight = sd.take(&format!("{prefix}.weight"), shape, device)?;
    let bias = if bias {
        Some(Param::from_tensor(sd.take(
            &format!("{prefix}.bias"),
            [shape[0]],
            device,
        )?))
    } else {
        None
    };
    Ok(conv_from_tensors(weight, bias, stride, padding))
}

pub fn conv_from_tensors<B: Backend>(
    weight: Tensor<B, 4>,
    bias: Option<Param<Tensor<B, 1>>>,
    stride: usize,
    padding: usize,
) -> Conv2d<B> {
    conv_from_params(Param::from_tensor(weight), bias, stride, padding)
}

/// `nn.Conv2d` around a weight parameter `[out, in, kh, kw]` (a loaded tensor, or one computed for a pass).
pub fn conv_from_params<B: Backend>(
    weight: Param<Tensor<B, 4>>,
    bias: Option<Param<Tensor<B, 1>>>,
    stride: usize,
    padding: usize,
) -> Conv2d<B> {
    let [_, _, kh, kw] = weight.shape().dims();
    Conv2d {
        weight,
        bias,
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    }
}

/// `nn.BatchNorm2d` in eval mode: `weight`, `bias`, `running_mean`, `running_var`.
pub fn batch_norm<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    channels: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<BatchNorm<B>, CheckpointError> {
    batch_norm_named(sd, prefix, ["weight", "bias"], channels, epsilon, device)
}

/// Batch norm whose affine tensors carry other names (BigGAN's `bn` calls them `gain` and `bias`, and its
/// statistics `stored_mean` / `stored_var`).
pub fn batch_norm_named<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    [gamma, beta]: [&str; 2],
    channels: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<BatchNorm<B>, CheckpointError> {
    let (mean, var) = if sd.contains(&format!("{prefix}.stored_mean")) {
        ("stored_mean", "stored_var")
    } else {
        ("running_mean", "running_var")
    };
    Ok(BatchNorm {
        gamma: Param::from_tensor(sd.take(&format!("{prefix}.{gamma}"), [channels], device)?),
        beta: Param::from_tensor(sd.take(&format!("{prefix}.{beta}"), [channels], device)?),
        running_mean: RunningState::new(sd.take(
            &format!("{prefix}.{mean}"),
            [channels],
            device,
        )?),
        running_var: RunningState::new(sd.take(&format!("{prefix}.{var}"), [channels], device)?),
        momentum: 0.1,
        epsilon,
    })
}

/// `nn.Linear`; PyTorch stores `[out, in]`, burn `[in, out]`.
pub fn linear<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    shape: [usize; 2],
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, CheckpointError> {
    let weight = sd.take_values(&format!("{prefix}.weight"), &shape)?;
    let bias = if bias {
        Some(sd.take(&format!("{prefix}.bias"), [shape[0]], device)?)
    } else {
        None
    };
    Ok(linear_from_torch(weight, shape, bias, device))
}

/// A burn `Linear` from PyTorch's `[out, in]` weight values. The transpose is materialised here so the weight
/// is contiguous, exactly as when the same layer is loaded back from the native format.
pub fn linear_from_torch<B: Backend>(
    weight_out_in: Vec<f32>,
    [d_out, d_in]: [usize; 2],
    bias: Option<Tensor<B, 1>>,
    device: &B::Device,
) -> Linear<B> {
    let mut transposed = vec![0.0f32; weight_out_in.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            transposed[i * d_out + o] = weight_out_in[o * d_in + i];
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(transposed, [d_in, d_out]),
            device,
        )),
        bias: bias.map(Param::from_tensor),
    }
}

/// The weight of one of BigGAN's spectrally normalised layers, divided by its largest singular value as the
/// layer computes it in eval mode: one power-iteration step from the stored `u0`, which eval mode never
/// updates, so the result is a constant we fold in once at load time. `sv0` is a training log, never read.
pub fn spectral_normalized_values(
    sd: &mut TorchStateDict,
    prefix: &str,
    shape: &[usize],
    eps: f64,
) -> Result<Vec<f32>, CheckpointError> {
    let rows = shape[0];
    let weight = sd.take_values(&format!("{prefix}.weight"), shape)?;
    let u = sd.take_values(&format!("{prefix}.u0"), &[1, rows])?;
    let sigma = largest_singular_value(&weight, rows, &u, eps);
    Ok(weight.iter().map(|w| w / sigma).collect())
}

/// One power-iteration step (IC-GAN's `power_iteration` with a single singular vector), in f64.
fn largest_singular_value(weight: &[f32], rows: usize, u: &[f32], eps: f64) -> f32 {
    let cols = weight.len() / rows;
    let normalize = |x: &mut Vec<f64>| {
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
        x.iter_mut().for_each(|v| *v /= norm);
    };
    // v = normalize(u W)
    let mut v = vec![0.0f64; cols];
    for (r, &ur) in u.iter().enumerate() {
        for (c, vc) in v.iter_mut().enumerate() {
            *vc += f64::from(ur) * f64::from(weight[r * cols + c]);
        }
    }
    normalize(&mut v);
    // u' = normalize(v W^T); sigma = (v W^T) . u'
    let mut wv: Vec<f64> = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| f64::from(weight[r * cols + c]) * v[c])
                .sum()
        })
        .collect();
    let wv_raw = wv.clone();
    normalize(&mut wv);
    wv_raw.iter().zip(&wv).map(|(a, b)| a * b).sum::<f64>() as f32
}

/// Nearest-neighbour upsampling by 2 (`F.interpolate(x, scale_factor=2)`). Source index `floor(o / 2)` is
/// exact in any float type, so every backend copies the same values.
pub fn upsample_nearest_2x<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        [h * 2, w * 2],
        InterpolateOptions::new(InterpolateMode::Nearest),
    )
}

/// Rows divided by their L2 norm (`F.normalize(x, dim=1)`, eps 1e-12).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn singular_value_of_a_diagonal_matrix() {
        // diag(3, 1): starting anywhere but along the second axis, one step already leans to 3.
        let sigma = largest_singular_value(&[3.0, 0.0, 0.0, 1.0], 2, &[1.0, 0.0], 1e-12);
        assert!((sigma - 3.0).abs() < 1e-6, "{sigma}");
    }

    #[test]
    fn upsample_repeats_each_pixel() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_data([[[[1.0, 2.0], [3.0, 4.0]]]], &device);
        let y = upsample_nearest_2x(x)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        assert_eq!(&y[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&y[8..], &[3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn upsample_gradient_sums_the_four_copies_of_each_pixel() {
        type A = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let x = Tensor::<A, 4>::from_data([[[[1.0, 2.0], [3.0, 4.0]]]], &device).require_grad();
        // Weight each output pixel by its own index, so each input's gradient is the sum of its four.
        let weights = Tensor::<A, 1>::from_data(
            TensorData::new((0..16).map(|i| i as f32).collect::<Vec<_>>(), [16]),
            &device,
        )
        .reshape([1, 1, 4, 4]);
        let loss = (upsample_nearest_2x(x.clone()) * weights).sum();
        let grad = x.grad(&loss.backward()).unwrap();
        let grad = grad.into_data().into_vec::<f32>().unwrap();
        assert_eq!(
            grad,
            [
                0. + 1. + 4. + 5.,
                2. + 3. + 6. + 7.,
                8. + 9. + 12. + 13.,
                10. + 11. + 14. + 15.
            ]
        );
    }
}
