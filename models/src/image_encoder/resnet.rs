//! The paper's image encoder `f_V`: torchvision's ResNet-50 as SwAV trained it, giving the 2048-d pooled feature
//! that IC-GAN conditions on. The project's own narrow encoders trained from nothing share its layout.

use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

use crate::NetworkKind;
use crate::checkpoint::CheckpointError;
#[cfg(feature = "torch")]
use crate::checkpoint::TorchStateDict;
#[cfg(feature = "torch")]
use crate::resnet::count_blocks;
use crate::resnet::{Bottleneck, Stem, block_plan};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetImageEncoderConfig {
    pub in_channels: usize,
    pub stem_width: usize,
    /// Inner (3x3) width of each stage's bottlenecks.
    pub stage_widths: Vec<usize>,
    /// Output channels of each stage (4x the planes in torchvision).
    pub stage_outputs: Vec<usize>,
    pub blocks_per_stage: Vec<usize>,
    /// Side of the square input images (224 for SwAV; a PyTorch checkpoint does not say, so 224 there).
    #[serde(default = "swav_input_size")]
    pub input_size: usize,
}

/// SwAV's (and IC-GAN's) input size.
pub const SWAV_INPUT_SIZE: usize = 224;

pub(super) fn swav_input_size() -> usize {
    SWAV_INPUT_SIZE
}

impl ResNetImageEncoderConfig {
    /// torchvision's ResNet-50, the backbone of SwAV's `swav_800ep_pretrain.pth.tar`.
    pub fn published() -> Self {
        Self {
            in_channels: 3,
            stem_width: 64,
            stage_widths: vec![64, 128, 256, 512],
            stage_outputs: vec![256, 512, 1024, 2048],
            blocks_per_stage: vec![3, 4, 6, 3],
            input_size: swav_input_size(),
        }
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        let n = self.stage_widths.len();
        if n == 0 || self.stage_outputs.len() != n || self.blocks_per_stage.len() != n {
            return Err(CheckpointError::InvalidConfig {
                network: NetworkKind::ImageEncoder.name(),
                message:
                    "stage widths, outputs and block counts must be non-empty and of equal length"
                        .into(),
            });
        }
        Ok(())
    }

    pub fn feature_dim(&self) -> usize {
        *self.stage_outputs.last().unwrap_or(&0)
    }
}

#[derive(Module, Debug)]
pub struct ResNetImageEncoder<B: Backend> {
    pub stem: Stem<B>,
    pub stages: Vec<Vec<Bottleneck<B>>>,
    /// Side of the square images it reads (not a weight: it travels in the configuration).
    #[module(skip)]
    pub input_size: usize,
}

impl<B: Backend> ResNetImageEncoder<B> {
    /// ImageNet-normalised images `[N, 3, 224, 224]` to pooled features `[N, 2048]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self.stem.forward(images);
        for block in self.stages.iter().flatten() {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([n, c])
    }
}

impl<B: Backend> ResNetImageEncoder<B> {
    pub fn config(&self) -> ResNetImageEncoderConfig {
        let [stem_width, in_channels, _, _] = self.stem.conv.weight.dims();
        ResNetImageEncoderConfig {
            in_channels,
            stem_width,
            stage_widths: self
                .stages
                .iter()
                .map(|s| s[0].conv1.weight.dims()[0])
                .collect(),
            stage_outputs: self
                .stages
                .iter()
                .map(|s| s[0].conv3.weight.dims()[0])
                .collect(),
            blocks_per_stage: self.stages.iter().map(Vec::len).collect(),
            input_size: self.input_size,
        }
    }

    pub fn init(
        config: &ResNetImageEncoderConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        config.validate()?;
        let plan = block_plan(
            config.stem_width,
            &config.stage_outputs,
            &config.blocks_per_stage,
        );
        let stages = plan
            .iter()
            .zip(&config.stage_widths)
            .map(|(stage, &width)| {
                stage
                    .iter()
                    .map(|b| Bottleneck::init(b.c_in, width, b.c_out, b.stride, device))
                    .collect()
            })
            .collect();
        Ok(Self {
            stem: Stem::init(config.in_channels, config.stem_width, device),
            stages,
            input_size: config.input_size,
        })
    }
}

/// SwAV checkpoints also hold the training heads; the feature extractor never reads them.
#[cfg(feature = "torch")]
fn is_ignored(name: &str) -> bool {
    crate::checkpoint::is_batch_counter(name)
        || name.starts_with("projection_head.")
        || name.starts_with("prototypes.")
}

#[cfg(feature = "torch")]
impl<B: Backend> ResNetImageEncoder<B> {
    /// torchvision's names (`conv1`, `layer{stage}.{k}.*`), with SwAV's training heads left unread.
    pub fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        let mut sd = sd.for_network(NetworkKind::ImageEncoder.name(), "");
        let [stem_width, in_channels, ..] = sd.shape("conv1.weight")?[..] else {
            return Err(CheckpointError::InvalidConfig {
                network: NetworkKind::ImageEncoder.name(),
                message: "conv1.weight must be 4-d".into(),
            });
        };
        let mut config = ResNetImageEncoderConfig {
            in_channels,
            stem_width,
            stage_widths: vec![],
            stage_outputs: vec![],
            blocks_per_stage: vec![],
            input_size: swav_input_size(),
        };
        for stage in 1..=4 {
            config.blocks_per_stage.push(count_blocks(&sd, stage)?);
            config
                .stage_widths
                .push(sd.shape(&format!("layer{stage}.0.conv1.weight"))?[0]);
            config
                .stage_outputs
                .push(sd.shape(&format!("layer{stage}.0.conv3.weight"))?[0]);
        }
        config.validate()?;
        let stem = Stem::from_torch(&mut sd, in_channels, stem_width, device)?;
        let mut stages = Vec::new();
        let plan = block_plan(stem_width, &config.stage_outputs, &config.blocks_per_stage);
        for (stage, &width) in plan.iter().zip(&config.stage_widths) {
            let blocks = stage.iter().map(|b| {
                Bottleneck::from_torch(&mut sd, &b.prefix, b.c_in, width, b.c_out, b.stride, device)
            });
            stages.push(blocks.collect::<Result<Vec<_>, _>>()?);
        }
        sd.finish(is_ignored)?;
        Ok(Self {
            stem,
            stages,
            input_size: config.input_size,
        })
    }
}
