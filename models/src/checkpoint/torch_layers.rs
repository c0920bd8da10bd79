//! burn layers read from a PyTorch state dict: each takes its tensors by name with the shape it expects.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;

use super::{CheckpointError, TorchStateDict};
use crate::layers::conv_from_tensors;

/// `nn.Conv2d` from `{prefix}.weight` (and `{prefix}.bias`). `shape` is `[out, in, k, k]`.
pub fn read_conv2d<B: Backend>(
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

/// `nn.BatchNorm2d` in eval mode: `weight`, `bias`, `running_mean`, `running_var`.
pub fn read_batch_norm<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    channels: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<BatchNorm<B>, CheckpointError> {
    read_batch_norm_named(sd, prefix, ["weight", "bias"], channels, epsilon, device)
}

/// Batch norm whose affine tensors carry other names (BigGAN's `bn` calls them `gain` and `bias`, and its
/// statistics `stored_mean` / `stored_var`).
pub fn read_batch_norm_named<B: Backend>(
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
pub fn read_linear<B: Backend>(
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
    Ok(linear_from_out_in(weight, shape, bias, device))
}

/// A burn `Linear` from PyTorch's `[out, in]` weight values. The transpose is materialised here so the weight
/// is contiguous, exactly as when the same layer is loaded back from the native format.
pub fn linear_from_out_in<B: Backend>(
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
pub fn read_spectral_normalised(
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
    let normalise = |x: &mut Vec<f64>| {
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
        x.iter_mut().for_each(|v| *v /= norm);
    };
    // v = normalise(u W)
    let mut v = vec![0.0f64; cols];
    for (r, &ur) in u.iter().enumerate() {
        for (c, vc) in v.iter_mut().enumerate() {
            *vc += f64::from(ur) * f64::from(weight[r * cols + c]);
        }
    }
    normalise(&mut v);
    // u' = normalise(v W^T); sigma = (v W^T) . u'
    let mut wv: Vec<f64> = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| f64::from(weight[r * cols + c]) * v[c])
                .sum()
        })
        .collect();
    let wv_raw = wv.clone();
    normalise(&mut wv);
    wv_raw.iter().zip(&wv).map(|(a, b)| a * b).sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_value_of_a_diagonal_matrix() {
        // diag(3, 1): starting anywhere but along the second axis, one step already leans to 3.
        let sigma = largest_singular_value(&[3.0, 0.0, 0.0, 1.0], 2, &[1.0, 0.0], 1e-12);
        assert!((sigma - 3.0).abs() < 1e-6, "{sigma}");
    }
}
