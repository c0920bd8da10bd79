//! The building blocks diffusers' VAE and UNet share, read from diffusers' tensor names: group norm,
//! `ResnetBlock2D`, the spatial self-attention of `Attention` and `Upsample2D`.

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, interpolate};
use burn::tensor::ops::{AttentionModuleOptions, InterpolateMode, InterpolateOptions};

use crate::checkpoint::torch_layers::{read_conv2d, read_linear};
use crate::checkpoint::{CheckpointError, TorchStateDict};

/// `nn.GroupNorm` (affine) from `{prefix}.weight` and `{prefix}.bias`.
pub fn read_group_norm<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    groups: usize,
    channels: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<GroupNorm<B>, CheckpointError> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(CheckpointError::InvalidConfig {
            network: sd.network(),
            message: format!("{channels} channels at {prefix} cannot form {groups} groups"),
        });
    }
    Ok(GroupNorm {
        gamma: Some(Param::from_tensor(sd.take(
            &format!("{prefix}.weight"),
            [channels],
            device,
        )?)),
        beta: Some(Param::from_tensor(sd.take(
            &format!("{prefix}.bias"),
            [channels],
            device,
        )?)),
        num_groups: groups,
        num_channels: channels,
        epsilon,
        affine: true,
    })
}

/// `nn.LayerNorm` from `{prefix}.weight` and `{prefix}.bias`.
pub fn read_layer_norm<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    width: usize,
    epsilon: f64,
    device: &B::Device,
) -> Result<LayerNorm<B>, CheckpointError> {
    let mut norm = LayerNormConfig::new(width)
        .with_epsilon(epsilon)
        .init(device);
    norm.gamma = Param::from_tensor(sd.take(&format!("{prefix}.weight"), [width], device)?);
    norm.beta = Some(Param::from_tensor(sd.take(
        &format!("{prefix}.bias"),
        [width],
        device,
    )?));
    Ok(norm)
}

/// The precision attention computes its scores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScorePrecision {
    /// The tensors' own.
    Native,
    /// f32 where the tensors are half precision, the result cast back: Stable Diffusion 2's query-key
    /// products overflow f16 (diffusers' `upcast_attention`, which its UNet configuration sets, and the
    /// upcast softmax of its VAE's attention).
    Upcast,
}

/// Softmax attention of `queries` `[batch, tokens, width]` over `keys` and `values` `[batch, other, width]`,
/// split into `heads` heads of `width / heads`, scaled by `1 / sqrt(head width)`, each query attending to
/// itself and the keys before it where `causal`: burn's attention operation, which a backend may fuse.
pub fn multi_head_attention<B: Backend>(
    queries: Tensor<B, 3>,
    keys: Tensor<B, 3>,
    values: Tensor<B, 3>,
    heads: usize,
    causal: bool,
    precision: ScorePrecision,
) -> Tensor<B, 3> {
    let [batch, tokens, width] = queries.dims();
    let dtype = queries.dtype();
    let upcast = precision == ScorePrecision::Upcast && matches!(dtype, DType::F16 | DType::BF16);
    let split = |t: Tensor<B, 3>| {
        let length = t.dims()[1];
        let t = t
            .reshape([batch, length, heads, width / heads])
            .swap_dims(1, 2);
        if upcast { t.cast(DType::F32) } else { t }
    };
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let attended = attention(
        split(queries),
        split(keys),
        split(values),
        None,
        None,
        options,
    );
    let attended = if upcast {
        attended.cast(dtype)
    } else {
        attended
    };
    attended.swap_dims(1, 2).reshape([batch, tokens, width])
}

/// A 3 x 3 convolution with padding 1 and a bias, diffusers' usual.
pub fn read_conv3x3<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    [c_in, c_out]: [usize; 2],
    device: &B::Device,
) -> Result<Conv2d<B>, CheckpointError> {
    read_conv2d(sd, prefix, [c_out, c_in, 3, 3], 1, 1, true, device)
}

/// `ResnetBlock2D`: two group-norm, SiLU, 3 x 3 convolution layers, the time embedding projected and added
/// between them (the UNet's; the VAE's blocks have none), and a 1 x 1 shortcut where the width changes.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    time_emb_proj: Option<Linear<B>>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    shortcut: Option<Conv2d<B>>,
}

/// How a [`ResnetBlock`] is laid out.
#[derive(Debug, Clone, Copy)]
pub struct ResnetShape {
    pub channels: [usize; 2],
    pub groups: usize,
    pub epsilon: f64,
    /// The width of the time embedding it adds, if any.
    pub time_embedding: Option<usize>,
}

impl<B: Backend> ResnetBlock<B> {
    pub fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        shape: ResnetShape,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let ResnetShape {
            channels: [c_in, c_out],
            groups,
            epsilon,
            time_embedding,
        } = shape;
        Ok(Self {
            norm1: read_group_norm(
                sd,
                &format!("{prefix}.norm1"),
                groups,
                c_in,
                epsilon,
                device,
            )?,
            conv1: read_conv3x3(sd, &format!("{prefix}.conv1"), [c_in, c_out], device)?,
            time_emb_proj: time_embedding
                .map(|width| {
                    let name = format!("{prefix}.time_emb_proj");
                    read_linear(sd, &name, [c_out, width], true, device)
                })
                .transpose()?,
            norm2: read_group_norm(
                sd,
                &format!("{prefix}.norm2"),
                groups,
                c_out,
                epsilon,
                device,
            )?,
            conv2: read_conv3x3(sd, &format!("{prefix}.conv2"), [c_out, c_out], device)?,
            shortcut: (c_in != c_out)
                .then(|| {
                    let name = format!("{prefix}.conv_shortcut");
                    read_conv2d(sd, &name, [c_out, c_in, 1, 1], 1, 0, true, device)
                })
                .transpose()?,
        })
    }

    /// `time`: the UNet's time embedding `[batch, width]`, for a block that has its projection.
    pub fn forward(&self, x: Tensor<B, 4>, time: Option<&Tensor<B, 2>>) -> Tensor<B, 4> {
        let mut h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        if let (Some(projection), Some(time)) = (&self.time_emb_proj, time) {
            let added = projection.forward(silu(time.clone()));
            let [batch, channels] = added.dims();
            h = h + added.reshape([batch, channels, 1, 1]);
        }
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}

/// `Attention` over the positions of a feature map, as the VAE's middle block has it: group norm, one
/// projection each for queries, keys and values, softmax attention per head, an output projection, and the
/// input added back.
#[derive(Module, Debug)]
pub struct SpatialAttention<B: Backend> {
    norm: GroupNorm<B>,
    to_q: Linear<B>,
    to_k: Linear<B>,
    to_v: Linear<B>,
    to_out: Linear<B>,
    heads: usize,
}

impl<B: Backend> SpatialAttention<B> {
    /// Reads diffusers' names (`to_q`, `to_k`, `to_v`, `to_out.0`), or the names of checkpoints written before
    /// diffusers 0.14 (`query`, `key`, `value`, `proj_attn`).
    pub fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        channels: usize,
        heads: usize,
        groups: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let legacy = !sd.contains(&format!("{prefix}.to_q.weight"))
            && sd.contains(&format!("{prefix}.query.weight"));
        let [q, k, v, out, norm] = if legacy {
            ["query", "key", "value", "proj_attn", "group_norm"]
        } else {
            ["to_q", "to_k", "to_v", "to_out.0", "group_norm"]
        };
        let mut linear = |name: &str| {
            read_linear(
                sd,
                &format!("{prefix}.{name}"),
                [channels, channels],
                true,
                device,
            )
        };
        let (to_q, to_k, to_v, to_out) = (linear(q)?, linear(k)?, linear(v)?, linear(out)?);
        if heads == 0 || !channels.is_multiple_of(heads) {
            return Err(CheckpointError::InvalidConfig {
                network: sd.network(),
                message: format!("{channels} channels at {prefix} cannot form {heads} heads"),
            });
        }
        Ok(Self {
            norm: read_group_norm(
                sd,
                &format!("{prefix}.{norm}"),
                groups,
                channels,
                1e-6,
                device,
            )?,
            to_q,
            to_k,
            to_v,
            to_out,
            heads,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, height, width] = x.dims();
        let positions = height * width;
        // [batch, positions, channels]
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([batch, channels, positions])
            .swap_dims(1, 2);
        let attended = multi_head_attention(
            self.to_q.forward(tokens.clone()),
            self.to_k.forward(tokens.clone()),
            self.to_v.forward(tokens),
            self.heads,
            false,
            ScorePrecision::Upcast,
        );
        let out = self
            .to_out
            .forward(attended)
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        out + x
    }
}

/// `Upsample2D`: nearest-neighbour doubling, then a 3 x 3 convolution.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    pub fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        channels: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            conv: read_conv3x3(sd, &format!("{prefix}.conv"), [channels, channels], device)?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, height, width] = x.dims();
        let doubled = interpolate(
            x,
            [height * 2, width * 2],
            InterpolateOptions::new(InterpolateMode::Nearest),
        );
        self.conv.forward(doubled)
    }
}

/// `Downsample2D` with its convolution: 3 x 3, stride 2, padding 1.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    conv: Conv2d<B>,
}

impl<B: Backend> Downsample<B> {
    pub fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        channels: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let name = format!("{prefix}.conv");
        Ok(Self {
            conv: read_conv2d(sd, &name, [channels, channels, 3, 3], 2, 1, true, device)?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, Tensor, TensorData};

    use super::{ScorePrecision, multi_head_attention};

    // burn's attention built from its parts (matmul, softmax), as a backend without a fused kernel of its
    // own runs it: in the tensors' precision.
    type Composed = Autodiff<Flex>;

    /// Queries and keys whose products pass 63 x 40 x 40 = 100,800, beyond f16's largest 65,504 (the scaled
    /// scores, about 12,600, would fit); the keys' last entries set them 0.625 apart once scaled, and the
    /// values tell the keys apart. Every number is exact in f16, so both precisions see the same inputs.
    fn overflowing(dtype: DType) -> [Tensor<Composed, 3>; 3] {
        let device = Default::default();
        let width = 64;
        let tensor = |rows: Vec<f32>, tokens: usize| {
            Tensor::<Composed, 3>::from_data(
                TensorData::new(rows, [1, tokens, width]),
                (&device, dtype),
            )
        };
        let queries = tensor(vec![40.0; 2 * width], 2);
        let keys = (0..3)
            .flat_map(|k| {
                let mut key = vec![40.0; width];
                key[width - 1] = 0.125 * k as f32;
                key
            })
            .collect();
        let values = (0..3).flat_map(|k| vec![k as f32; width]).collect();
        [queries, tensor(keys, 3), tensor(values, 3)]
    }

    fn attend(dtype: DType, precision: ScorePrecision) -> Vec<f32> {
        let [queries, keys, values] = overflowing(dtype);
        let out = multi_head_attention(queries, keys, values, 1, false, precision);
        assert_eq!(out.dtype(), dtype, "the result keeps the inputs' precision");
        out.cast(DType::F32).into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn upcast_scores_survive_products_that_overflow_half_precision() {
        let reference = attend(DType::F32, ScorePrecision::Native);
        assert!(reference.iter().all(|v| v.is_finite()));
        // Without the upcast the products overflow, and the softmax of infinities is not a number.
        let native = attend(DType::F16, ScorePrecision::Native);
        assert!(native.iter().any(|v| !v.is_finite()), "{native:?}");
        let upcast = attend(DType::F16, ScorePrecision::Upcast);
        for (got, want) in upcast.iter().zip(&reference) {
            assert!(
                (got - want).abs() <= 2e-3 * want.abs().max(1.0),
                "{got} against {want}"
            );
        }
    }

    #[test]
    fn upcasting_leaves_single_precision_as_it_is() {
        assert_eq!(
            attend(DType::F32, ScorePrecision::Upcast),
            attend(DType::F32, ScorePrecision::Native)
        );
    }
}
