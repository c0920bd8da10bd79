//! EfficientNet-Lite (Tan & Le 2019, the TPU repository's mobile variant): inverted-residual blocks without
//! squeeze-and-excitation, ReLU6, TensorFlow's "same" padding and batch norm with epsilon 1e-3, pooled to the
//! head's width (1280). With its ImageNet weights it is the default model's frozen `f_V`: no image encoder
//! trained here from a few hundred pictures finds pictures of one thing as near neighbours as well
//! (docs/experiments.md, "Pretrained image encoders from the registries").
//!
//! It reads images normalised as every encoder here does (ImageNet mean and standard deviation) and turns them
//! into what the TPU repository trained on, `(v - 127) / 128` for 8-bit values, itself.

use burn::module::ModuleVisitor;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

use super::{IMAGENET_MEAN, IMAGENET_STD};
use crate::NetworkKind;
use crate::checkpoint::CheckpointError;
use crate::norm::apply_batch_norm;

#[cfg(feature = "torch")]
mod import;
#[cfg(feature = "torch")]
pub(crate) use import::is_efficientnet_lite;

/// The TPU repository's batch-norm epsilon (PyTorch's default is 1e-5).
pub const LITE_BN_EPS: f64 = 1e-3;

/// One inverted-residual block: a 1 x 1 expansion (absent where the width is kept), a depthwise `kernel` x
/// `kernel` convolution with the block's stride, a 1 x 1 projection; the input is added back where the block
/// keeps both width and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbConvConfig {
    pub c_in: usize,
    /// Width of the depthwise convolution: `c_in` times the expansion ratio.
    pub expanded: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl MbConvConfig {
    fn has_expansion(&self) -> bool {
        self.expanded != self.c_in
    }

    fn is_residual(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfficientNetLiteConfig {
    pub in_channels: usize,
    /// Width of the 3 x 3, stride-2 stem.
    pub stem_width: usize,
    pub blocks: Vec<MbConvConfig>,
    /// Width of the final 1 x 1 convolution: the feature's length.
    pub head_width: usize,
    /// Side of the square images it reads (260 for Lite2, 224 for Lite0).
    pub input_size: usize,
    /// Width of a linear projection of the pooled features, where one was trained on top of the frozen
    /// network (supervised contrastive learning on labelled pictures, in the trainer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<usize>,
}

impl EfficientNetLiteConfig {
    pub fn feature_dim(&self) -> usize {
        self.projection.unwrap_or(self.head_width)
    }

    pub(super) fn validate(&self) -> Result<(), CheckpointError> {
        let invalid = |message: String| CheckpointError::InvalidConfig {
            network: NetworkKind::ImageEncoder.name(),
            message,
        };
        let mut width = self.stem_width;
        for (index, block) in self.blocks.iter().enumerate() {
            if block.c_in != width {
                return Err(invalid(format!(
                    "block {index} reads {} channels but receives {width}",
                    block.c_in
                )));
            }
            if block.kernel == 0 || block.stride == 0 {
                return Err(invalid(format!(
                    "block {index} has a zero kernel or stride"
                )));
            }
            width = block.c_out;
        }
        if self.in_channels != 3 {
            return Err(invalid(format!(
                "an EfficientNet-Lite reads RGB pictures, not {} channels",
                self.in_channels
            )));
        }
        if self.blocks.is_empty() || self.input_size == 0 {
            return Err(invalid(
                "an EfficientNet-Lite needs blocks and an input size".into(),
            ));
        }
        if self.projection == Some(0) {
            return Err(invalid("the projection has no width".into()));
        }
        Ok(())
    }
}

/// A bias-free convolution with TensorFlow's "same" padding (the extra row and column, where the padding is
/// odd, at the end) followed by batch norm.
#[derive(Module, Debug)]
pub struct ConvNorm<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ConvNorm<B> {
    fn init(
        [c_in, c_out]: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .with_groups(groups)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(c_out)
                .with_epsilon(LITE_BN_EPS)
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        apply_batch_norm(&self.norm, self.conv.forward(x))
    }
}

fn relu6<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    x.clamp(0.0, 6.0)
}

#[derive(Module, Debug)]
pub struct MbConv<B: Backend> {
    pub expand: Option<ConvNorm<B>>,
    pub depthwise: ConvNorm<B>,
    pub project: ConvNorm<B>,
    #[module(skip)]
    pub config: MbConvConfig,
}

impl<B: Backend> MbConv<B> {
    fn init(config: &MbConvConfig, device: &B::Device) -> Self {
        let MbConvConfig {
            c_in,
            expanded,
            c_out,
            kernel,
            stride,
        } = *config;
        Self {
            expand: config
                .has_expansion()
                .then(|| ConvNorm::init([c_in, expanded], 1, 1, 1, device)),
            depthwise: ConvNorm::init([expanded, expanded], kernel, stride, expanded, device),
            project: ConvNorm::init([expanded, c_out], 1, 1, 1, device),
            config: config.clone(),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut h = x.clone();
        if let Some(expand) = &self.expand {
            h = relu6(expand.forward(h));
        }
        h = self.project.forward(relu6(self.depthwise.forward(h)));
        if self.config.is_residual() { h + x } else { h }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite<B: Backend> {
    pub stem: ConvNorm<B>,
    pub blocks: Vec<MbConv<B>>,
    pub head: ConvNorm<B>,
    /// A linear map of the pooled features (see [`EfficientNetLiteConfig::projection`]).
    pub projection: Option<Linear<B>>,
    /// Side of the square images it reads (not a weight: it travels in the configuration).
    #[module(skip)]
    pub input_size: usize,
}

impl<B: Backend> EfficientNetLite<B> {
    pub fn init(
        config: &EfficientNetLiteConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        config.validate()?;
        let last = config.blocks.last().map_or(config.stem_width, |b| b.c_out);
        Ok(Self {
            stem: ConvNorm::init([config.in_channels, config.stem_width], 3, 2, 1, device),
            blocks: config
                .blocks
                .iter()
                .map(|b| MbConv::init(b, device))
                .collect(),
            head: ConvNorm::init([last, config.head_width], 1, 1, 1, device),
            projection: config
                .projection
                .map(|width| LinearConfig::new(config.head_width, width).init(device)),
            input_size: config.input_size,
        })
    }

    /// The network without its projection, and the projection: the pooled features are worth caching apart,
    /// since a retrained projection leaves them unchanged.
    pub fn split_projection(self) -> (Self, Option<Linear<B>>) {
        let projection = self.projection;
        (
            Self {
                projection: None,
                ..self
            },
            projection,
        )
    }

    pub fn config(&self) -> EfficientNetLiteConfig {
        let [stem_width, in_channels, _, _] = self.stem.conv.weight.dims();
        EfficientNetLiteConfig {
            in_channels,
            stem_width,
            blocks: self.blocks.iter().map(|b| b.config.clone()).collect(),
            head_width: self.head.conv.weight.dims()[0],
            input_size: self.input_size,
            projection: self.projection.as_ref().map(|p| p.weight.dims()[1]),
        }
    }

    /// ImageNet-normalised images `[N, 3, H, W]` to its features `[N, feature_dim]`: pooled, then projected
    /// where it has a projection.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let pooled = self.pooled(images);
        match &self.projection {
            Some(projection) => projection.forward(pooled),
            None => pooled,
        }
    }

    /// The pooled features `[N, head_width]`, before any projection.
    pub fn pooled(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = relu6(self.stem.forward(tpu_normalised(images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = relu6(self.head.forward(x));
        let [n, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([n, c])
    }

    /// Visits every parameter but the projection's, in the order a visit of the whole network takes.
    pub fn visit_backbone<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        self.stem.visit(visitor);
        self.blocks.visit(visitor);
        self.head.visit(visitor);
    }
}

/// ImageNet normalisation `(u - mean) / std` of unit values `u` redone as the TPU repository's
/// `(255 u - 127) / 128`: one affine map per channel.
fn tpu_normalised<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    let n = images.dims()[0];
    let device = images.device();
    let per_channel = |values: [f32; 3]| {
        Tensor::<B, 1>::from_floats(values, &device)
            .reshape([1, 3, 1, 1])
            .repeat_dim(0, n)
    };
    let scale = IMAGENET_STD.map(|s| 255.0 * s / 128.0);
    let shift = std::array::from_fn(|i| (255.0 * IMAGENET_MEAN[i] - 127.0) / 128.0);
    images * per_channel(scale) + per_channel(shift)
}
