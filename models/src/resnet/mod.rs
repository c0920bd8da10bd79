//! torchvision-style ResNet building blocks, shared by the audio encoder (BasicBlock) and the image encoder
//! (Bottleneck). Batch norm follows burn's convention: batch statistics under autodiff, stored ones otherwise.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer};
use burn::prelude::*;

use crate::fused::{self, Epilogue};
use crate::layers::init_conv;
use crate::norm::BN_EPS;

#[cfg(feature = "torch")]
mod import;
#[cfg(feature = "torch")]
pub(crate) use import::count_blocks;

/// A bias-free convolution initialised like torchvision's ResNet (Kaiming normal, fan-out).
fn resnet_conv<B: Backend>(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let initializer = Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    };
    init_conv(channels, kernel, stride, false, Some(initializer), device)
}

pub(crate) fn init_bn<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPS)
        .init(device)
}

/// `conv1` (7x7, stride 2) - `bn1` - ReLU - 3x3 max pool, stride 2.
#[derive(Module, Debug)]
pub struct Stem<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

impl<B: Backend> Stem<B> {
    pub fn init(in_channels: usize, width: usize, device: &B::Device) -> Self {
        Self {
            conv: resnet_conv([in_channels, width], 7, 2, device),
            bn: init_bn(width, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = fused::conv2d(&self.conv, x, Epilogue::none().norm(&self.bn).relu());
        fused::max_pool2d(x, 3, 2, 1)
    }
}

/// The 1x1 projection of a residual shortcut: `downsample.0` (conv) and `downsample.1` (bn).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

impl<B: Backend> Downsample<B> {
    pub(crate) fn init(c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Self {
        Self {
            conv: resnet_conv([c_in, c_out], 1, stride, device),
            bn: init_bn(c_out, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        fused::conv2d(&self.conv, x, Epilogue::none().norm(&self.bn))
    }
}

/// A residual block's shortcut: the projection where it has one, else the input itself.
fn shortcut<B: Backend>(downsample: &Option<Downsample<B>>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match downsample {
        Some(d) => d.forward(x),
        None => x,
    }
}

/// ResNet-18/34's block: two 3x3 convolutions, stride in the first.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> BasicBlock<B> {
    pub fn init(c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Self {
        Self {
            conv1: resnet_conv([c_in, c_out], 3, stride, device),
            bn1: init_bn(c_out, device),
            conv2: resnet_conv([c_out, c_out], 3, 1, device),
            bn2: init_bn(c_out, device),
            downsample: (stride != 1 || c_in != c_out)
                .then(|| Downsample::init(c_in, c_out, stride, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = fused::conv2d(&self.conv1, x, Epilogue::none().norm(&self.bn1).relu());
        let last = Epilogue::none().norm(&self.bn2).residual(identity).relu();
        fused::conv2d(&self.conv2, out, last)
    }
}

/// ResNet-50's block (torchvision v1.5: the stride sits in the 3x3 convolution).
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub conv3: Conv2d<B>,
    pub bn3: BatchNorm<B>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> Bottleneck<B> {
    pub fn init(
        c_in: usize,
        width: usize,
        c_out: usize,
        stride: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            conv1: resnet_conv([c_in, width], 1, 1, device),
            bn1: init_bn(width, device),
            conv2: resnet_conv([width, width], 3, stride, device),
            bn2: init_bn(width, device),
            conv3: resnet_conv([width, c_out], 1, 1, device),
            bn3: init_bn(c_out, device),
            downsample: (stride != 1 || c_in != c_out)
                .then(|| Downsample::init(c_in, c_out, stride, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = fused::conv2d(&self.conv1, x, Epilogue::none().norm(&self.bn1).relu());
        let out = fused::conv2d(&self.conv2, out, Epilogue::none().norm(&self.bn2).relu());
        let last = Epilogue::none().norm(&self.bn3).residual(identity).relu();
        fused::conv2d(&self.conv3, out, last)
    }
}

/// Where one residual block sits and what it connects.
pub(crate) struct BlockSpec {
    /// `layer{stage}.{index}` in torchvision's naming: where PyTorch import finds the block's tensors.
    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    pub prefix: String,
    pub c_in: usize,
    pub c_out: usize,
    pub stride: usize,
}

/// The blocks of a ResNet body, stage by stage: each stage but the first halves the resolution in its first
/// block, and every block takes the previous block's output channels.
pub(crate) fn block_plan(
    stem_width: usize,
    stage_outputs: &[usize],
    blocks_per_stage: &[usize],
) -> Vec<Vec<BlockSpec>> {
    let mut c_in = stem_width;
    stage_outputs
        .iter()
        .zip(blocks_per_stage)
        .enumerate()
        .map(|(stage, (&c_out, &blocks))| {
            (0..blocks)
                .map(|index| {
                    let spec = BlockSpec {
                        prefix: format!("layer{}.{index}", stage + 1),
                        c_in,
                        c_out,
                        stride: if stage > 0 && index == 0 { 2 } else { 1 },
                    };
                    c_in = c_out;
                    spec
                })
                .collect()
        })
        .collect()
}
