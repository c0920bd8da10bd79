//! The UNet's `Transformer2DModel`: a feature map's positions as tokens through one `BasicTransformerBlock`
//! (self-attention, cross-attention to the text states, a GEGLU feed-forward, each after a layer norm and
//! added back), between projections in and out and around a group norm.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use super::blocks::{ScorePrecision, multi_head_attention, read_group_norm, read_layer_norm};
use crate::checkpoint::torch_layers::{read_conv2d, read_linear};
use crate::checkpoint::{CheckpointError, TorchStateDict};

/// The epsilon of the transformer's group norm (diffusers fixes it) and of its layer norms (the default).
const GROUP_NORM_EPSILON: f64 = 1e-6;
const LAYER_NORM_EPSILON: f64 = 1e-5;

/// How a transformer is laid out.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    pub channels: usize,
    pub heads: usize,
    pub groups: usize,
    /// The width of the text states cross-attention reads.
    pub context_width: usize,
    /// Linear projections in and out (Stable Diffusion 2's), else 1 x 1 convolutions.
    pub linear_projection: bool,
    /// The attention scores' precision (f32 under half precision where the configuration sets
    /// `upcast_attention`).
    pub scores: ScorePrecision,
}

/// diffusers' `Attention` between tokens: queries from `x`, keys and values from `context` (or `x`), heads of
/// `width / heads`, no biases but the output projection's.
#[derive(Module, Debug)]
struct Attention<B: Backend> {
    to_q: Linear<B>,
    to_k: Linear<B>,
    to_v: Linear<B>,
    to_out: Linear<B>,
    heads: usize,
    #[module(skip)]
    scores: ScorePrecision,
}

impl<B: Backend> Attention<B> {
    fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        [width, context_width]: [usize; 2],
        shape: &TransformerShape,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let mut linear = |name: &str, input: usize, bias: bool| {
            read_linear(
                sd,
                &format!("{prefix}.{name}"),
                [width, input],
                bias,
                device,
            )
        };
        Ok(Self {
            to_q: linear("to_q", width, false)?,
            to_k: linear("to_k", context_width, false)?,
            to_v: linear("to_v", context_width, false)?,
            to_out: linear("to_out.0", width, true)?,
            heads: shape.heads,
            scores: shape.scores,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, context: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let context = context.unwrap_or_else(|| x.clone());
        let attended = multi_head_attention(
            self.to_q.forward(x),
            self.to_k.forward(context.clone()),
            self.to_v.forward(context),
            self.heads,
            false,
            self.scores,
        );
        self.to_out.forward(attended)
    }
}

/// `FeedForward` with GEGLU: one projection to twice the inner width, half of it gating the other half
/// through the exact GELU, and back.
#[derive(Module, Debug)]
struct FeedForward<B: Backend> {
    project_in: Linear<B>,
    project_out: Linear<B>,
}

impl<B: Backend> FeedForward<B> {
    fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        width: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let inner = width * 4;
        Ok(Self {
            project_in: read_linear(
                sd,
                &format!("{prefix}.net.0.proj"),
                [inner * 2, width],
                true,
                device,
            )?,
            project_out: read_linear(sd, &format!("{prefix}.net.2"), [width, inner], true, device)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let projected = self.project_in.forward(x);
        let inner = projected.dims()[2] / 2;
        let hidden = projected.clone().narrow(2, 0, inner);
        let gate = projected.narrow(2, inner, inner);
        self.project_out.forward(hidden * gelu(gate))
    }
}

#[derive(Module, Debug)]
struct TransformerBlock<B: Backend> {
    norm1: LayerNorm<B>,
    self_attention: Attention<B>,
    norm2: LayerNorm<B>,
    cross_attention: Attention<B>,
    norm3: LayerNorm<B>,
    feed_forward: FeedForward<B>,
}

impl<B: Backend> TransformerBlock<B> {
    fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        shape: &TransformerShape,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let width = shape.channels;
        Ok(Self {
            norm1: read_layer_norm(
                sd,
                &format!("{prefix}.norm1"),
                width,
                LAYER_NORM_EPSILON,
                device,
            )?,
            self_attention: Attention::read(
                sd,
                &format!("{prefix}.attn1"),
                [width, width],
                shape,
                device,
            )?,
            norm2: read_layer_norm(
                sd,
                &format!("{prefix}.norm2"),
                width,
                LAYER_NORM_EPSILON,
                device,
            )?,
            cross_attention: Attention::read(
                sd,
                &format!("{prefix}.attn2"),
                [width, shape.context_width],
                shape,
                device,
            )?,
            norm3: read_layer_norm(
                sd,
                &format!("{prefix}.norm3"),
                width,
                LAYER_NORM_EPSILON,
                device,
            )?,
            feed_forward: FeedForward::read(sd, &format!("{prefix}.ff"), width, device)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, context: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self
            .self_attention
            .forward(self.norm1.forward(x.clone()), None)
            + x;
        let x = self
            .cross_attention
            .forward(self.norm2.forward(x.clone()), Some(context))
            + x;
        self.feed_forward.forward(self.norm3.forward(x.clone())) + x
    }
}

/// The projections in and out of the token space: linear layers or 1 x 1 convolutions.
#[derive(Module, Debug)]
enum Projection<B: Backend> {
    Linear(Linear<B>),
    Conv(Conv2d<B>),
}

#[derive(Module, Debug)]
pub struct Transformer2d<B: Backend> {
    norm: GroupNorm<B>,
    proj_in: Projection<B>,
    block: TransformerBlock<B>,
    proj_out: Projection<B>,
}

impl<B: Backend> Transformer2d<B> {
    pub fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        shape: TransformerShape,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let c = shape.channels;
        if shape.heads == 0 || !c.is_multiple_of(shape.heads) {
            return Err(CheckpointError::InvalidConfig {
                network: sd.network(),
                message: format!("{c} channels at {prefix} cannot form {} heads", shape.heads),
            });
        }
        let mut projection = |name: &str| -> Result<Projection<B>, CheckpointError> {
            let name = format!("{prefix}.{name}");
            Ok(if shape.linear_projection {
                Projection::Linear(read_linear(sd, &name, [c, c], true, device)?)
            } else {
                Projection::Conv(read_conv2d(sd, &name, [c, c, 1, 1], 1, 0, true, device)?)
            })
        };
        let (proj_in, proj_out) = (projection("proj_in")?, projection("proj_out")?);
        Ok(Self {
            norm: read_group_norm(
                sd,
                &format!("{prefix}.norm"),
                shape.groups,
                c,
                GROUP_NORM_EPSILON,
                device,
            )?,
            proj_in,
            block: TransformerBlock::read(
                sd,
                &format!("{prefix}.transformer_blocks.0"),
                &shape,
                device,
            )?,
            proj_out,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>, context: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, channels, height, width] = x.dims();
        let normed = self.norm.forward(x.clone());
        let to_tokens = |t: Tensor<B, 4>| {
            t.swap_dims(1, 2)
                .swap_dims(2, 3)
                .reshape([batch, height * width, channels])
        };
        let to_map = |t: Tensor<B, 3>| {
            t.reshape([batch, height, width, channels])
                .swap_dims(2, 3)
                .swap_dims(1, 2)
        };
        let tokens = match &self.proj_in {
            Projection::Linear(linear) => linear.forward(to_tokens(normed)),
            Projection::Conv(conv) => to_tokens(conv.forward(normed)),
        };
        let tokens = self.block.forward(tokens, context);
        let out = match &self.proj_out {
            Projection::Linear(linear) => to_map(linear.forward(tokens)),
            Projection::Conv(conv) => conv.forward(to_map(tokens)),
        };
        out + x
    }
}
