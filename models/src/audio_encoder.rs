//! The audio encoder `f_A` of Sound2Scene: a ResNet-18 over the 1 x 257 x 1004 log-spectrogram, global average
//! pool, `fc` to the 2048-d visual latent space, then ReLU (as the reference's `AVENet` returns it).
//! Sound2Vision's diffusion variant adds `fc2` after the ReLU (its `ResNet_`, `fc` 512 -> 1024, ReLU, `fc2`
//! 1024 -> 1024, no ReLU after): the 1024-d CLIP image-embedding space of Stable unCLIP.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
#[cfg(feature = "torch")]
use crate::checkpoint::{FromTorch, TorchStateDict, torch_layers::read_linear};
#[cfg(feature = "torch")]
use crate::resnet::count_blocks;
use crate::resnet::{BasicBlock, Stem, block_plan};
use crate::{NetworkKind, NetworkModule};

/// The shape of an audio encoder; read from a checkpoint's tensor shapes, never assumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioEncoderConfig {
    pub in_channels: usize,
    pub stem_width: usize,
    /// Output channels of each of the four stages.
    pub stage_widths: Vec<usize>,
    pub blocks_per_stage: Vec<usize>,
    pub embedding_dim: usize,
    /// Sound2Vision's second projection after the ReLU (configurations written before it have none).
    #[serde(default)]
    pub fc2: bool,
}

impl AudioEncoderConfig {
    /// The published Sound2Scene encoder: ResNet-18 (64..512), one input channel, `fc` 512 -> 2048.
    pub fn published() -> Self {
        Self {
            in_channels: 1,
            stem_width: 64,
            stage_widths: vec![64, 128, 256, 512],
            blocks_per_stage: vec![2, 2, 2, 2],
            embedding_dim: 2048,
            fc2: false,
        }
    }

    /// The published Sound2Vision encoder (`sound2vision_env.pth`): the same ResNet-18, `fc` 512 -> 1024, ReLU,
    /// `fc2` 1024 -> 1024.
    pub fn sound2vision() -> Self {
        Self {
            embedding_dim: 1024,
            fc2: true,
            ..Self::published()
        }
    }

    /// Sound2Vision's layout (`fc2` on) `embedding_dim` wide, at four channels a stage and one block each: a
    /// few thousand parameters, for tests and fixtures that need its shape rather than its weights.
    pub fn narrow_sound2vision(embedding_dim: usize) -> Self {
        Self {
            in_channels: 1,
            stem_width: 4,
            stage_widths: vec![4; 4],
            blocks_per_stage: vec![1; 4],
            embedding_dim,
            fc2: true,
        }
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        let invalid = |message: &str| {
            Err(CheckpointError::InvalidConfig {
                network: NetworkKind::AudioEncoder.name(),
                message: message.into(),
            })
        };
        if self.stage_widths.is_empty() || self.stage_widths.len() != self.blocks_per_stage.len() {
            return invalid("stage widths and block counts must be non-empty and of equal length");
        }
        if self.in_channels == 0
            || self.stem_width == 0
            || self.embedding_dim == 0
            || self.stage_widths.contains(&0)
            || self.blocks_per_stage.contains(&0)
        {
            return invalid("every size must be positive");
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct AudioEncoder<B: Backend> {
    pub stem: Stem<B>,
    pub stages: Vec<Vec<BasicBlock<B>>>,
    pub fc: Linear<B>,
    pub fc2: Option<Linear<B>>,
}

impl<B: Backend> AudioEncoder<B> {
    /// Spectrograms `[N, 1, 257, 1004]` to embeddings `[N, 2048]` (after the final ReLU, not normalised), or
    /// with `fc2`, `[N, 1024]` after it.
    pub fn forward(&self, spectrograms: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self.stem.forward(spectrograms);
        for block in self.stages.iter().flatten() {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        let pooled = adaptive_avg_pool2d(x, [1, 1]).reshape([n, c]);
        let embedding = relu(self.fc.forward(pooled));
        match &self.fc2 {
            Some(fc2) => fc2.forward(embedding),
            None => embedding,
        }
    }
}

impl<B: Backend> NetworkModule<B> for AudioEncoder<B> {
    type Config = AudioEncoderConfig;
    const KIND: NetworkKind = NetworkKind::AudioEncoder;

    fn config(&self) -> AudioEncoderConfig {
        let [stem_width, in_channels, _, _] = self.stem.conv.weight.dims();
        AudioEncoderConfig {
            in_channels,
            stem_width,
            stage_widths: self
                .stages
                .iter()
                .map(|s| s[0].conv1.weight.dims()[0])
                .collect(),
            blocks_per_stage: self.stages.iter().map(Vec::len).collect(),
            embedding_dim: self.fc.weight.dims()[1],
            fc2: self.fc2.is_some(),
        }
    }

    fn init(config: &AudioEncoderConfig, device: &B::Device) -> Result<Self, CheckpointError> {
        config.validate()?;
        let plan = block_plan(
            config.stem_width,
            &config.stage_widths,
            &config.blocks_per_stage,
        );
        let stages = plan
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|b| BasicBlock::init(b.c_in, b.c_out, b.stride, device))
                    .collect()
            })
            .collect();
        Ok(Self {
            stem: Stem::init(config.in_channels, config.stem_width, device),
            stages,
            fc: LinearConfig::new(
                *config.stage_widths.last().expect("validated non-empty"),
                config.embedding_dim,
            )
            .init(device),
            fc2: config.fc2.then(|| {
                LinearConfig::new(config.embedding_dim, config.embedding_dim).init(device)
            }),
        })
    }
}

#[cfg(feature = "torch")]
impl<B: Backend> FromTorch<B> for AudioEncoder<B> {
    fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        // Sound2Scene saves `AVENet`, whose ResNet sits under `audnet.`.
        let mut sd = sd.for_network(Self::KIND.name(), "audnet.");
        let [stem_width, in_channels, ..] = sd.shape("conv1.weight")?[..] else {
            return Err(CheckpointError::InvalidConfig {
                network: Self::KIND.name(),
                message: "conv1.weight must be 4-d".into(),
            });
        };
        let mut stage_widths = Vec::new();
        let mut blocks_per_stage = Vec::new();
        for stage in 1..=4 {
            blocks_per_stage.push(count_blocks(&sd, stage)?);
            stage_widths.push(sd.shape(&format!("layer{stage}.0.conv1.weight"))?[0]);
        }
        let embedding_dim = sd.shape("fc.weight")?[0];
        let config = AudioEncoderConfig {
            in_channels,
            stem_width,
            stage_widths,
            blocks_per_stage,
            embedding_dim,
            fc2: sd.contains("fc2.weight"),
        };
        config.validate()?;

        let stem = Stem::from_torch(&mut sd, in_channels, stem_width, device)?;
        let mut stages = Vec::new();
        for stage in block_plan(stem_width, &config.stage_widths, &config.blocks_per_stage) {
            let blocks = stage.iter().map(|b| {
                BasicBlock::from_torch(&mut sd, &b.prefix, b.c_in, b.c_out, b.stride, device)
            });
            stages.push(blocks.collect::<Result<Vec<_>, _>>()?);
        }
        let c_in = *config.stage_widths.last().expect("validated non-empty");
        let fc = read_linear(&mut sd, "fc", [embedding_dim, c_in], true, device)?;
        let fc2 = config
            .fc2
            .then(|| read_linear(&mut sd, "fc2", [embedding_dim, embedding_dim], true, device))
            .transpose()?;
        sd.finish(crate::checkpoint::is_batch_counter)?;
        Ok(Self {
            stem,
            stages,
            fc,
            fc2,
        })
    }
}
