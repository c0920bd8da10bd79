//! The ResNet blocks read from torchvision's state-dict names (`conv1`, `bn1`, `layer{stage}.{k}.*`).

use burn::prelude::*;

use super::{BasicBlock, Bottleneck, Downsample, Stem};
use crate::checkpoint::torch_layers::{read_batch_norm, read_conv2d};
use crate::checkpoint::{CheckpointError, TorchStateDict};
use crate::norm::BN_EPS;

impl<B: Backend> Stem<B> {
    pub fn from_torch(
        sd: &mut TorchStateDict,
        in_channels: usize,
        width: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            conv: read_conv2d(sd, "conv1", [width, in_channels, 7, 7], 2, 3, false, device)?,
            bn: read_batch_norm(sd, "bn1", width, BN_EPS, device)?,
        })
    }
}

impl<B: Backend> Downsample<B> {
    pub(crate) fn from_torch(
        sd: &mut TorchStateDict,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            conv: read_conv2d(
                sd,
                &format!("{prefix}.downsample.0"),
                [c_out, c_in, 1, 1],
                stride,
                0,
                false,
                device,
            )?,
            bn: read_batch_norm(sd, &format!("{prefix}.downsample.1"), c_out, BN_EPS, device)?,
        })
    }
}

impl<B: Backend> BasicBlock<B> {
    pub fn from_torch(
        sd: &mut TorchStateDict,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            conv1: read_conv2d(
                sd,
                &format!("{prefix}.conv1"),
                [c_out, c_in, 3, 3],
                stride,
                1,
                false,
                device,
            )?,
            bn1: read_batch_norm(sd, &format!("{prefix}.bn1"), c_out, BN_EPS, device)?,
            conv2: read_conv2d(
                sd,
                &format!("{prefix}.conv2"),
                [c_out, c_out, 3, 3],
                1,
                1,
                false,
                device,
            )?,
            bn2: read_batch_norm(sd, &format!("{prefix}.bn2"), c_out, BN_EPS, device)?,
            downsample: if stride != 1 || c_in != c_out {
                Some(Downsample::from_torch(
                    sd, prefix, c_in, c_out, stride, device,
                )?)
            } else {
                None
            },
        })
    }
}

impl<B: Backend> Bottleneck<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn from_torch(
        sd: &mut TorchStateDict,
        prefix: &str,
        c_in: usize,
        width: usize,
        c_out: usize,
        stride: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            conv1: read_conv2d(
                sd,
                &format!("{prefix}.conv1"),
                [width, c_in, 1, 1],
                1,
                0,
                false,
                device,
            )?,
            bn1: read_batch_norm(sd, &format!("{prefix}.bn1"), width, BN_EPS, device)?,
            conv2: read_conv2d(
                sd,
                &format!("{prefix}.conv2"),
                [width, width, 3, 3],
                stride,
                1,
                false,
                device,
            )?,
            bn2: read_batch_norm(sd, &format!("{prefix}.bn2"), width, BN_EPS, device)?,
            conv3: read_conv2d(
                sd,
                &format!("{prefix}.conv3"),
                [c_out, width, 1, 1],
                1,
                0,
                false,
                device,
            )?,
            bn3: read_batch_norm(sd, &format!("{prefix}.bn3"), c_out, BN_EPS, device)?,
            downsample: if stride != 1 || c_in != c_out {
                Some(Downsample::from_torch(
                    sd, prefix, c_in, c_out, stride, device,
                )?)
            } else {
                None
            },
        })
    }
}

/// How many blocks `layer{stage}` has in a checkpoint (`layer{stage}.{k}.conv1.weight` for k = 0, 1, ...).
pub(crate) fn count_blocks(sd: &TorchStateDict, stage: usize) -> Result<usize, CheckpointError> {
    let count = (0..)
        .take_while(|k| sd.contains(&format!("layer{stage}.{k}.conv1.weight")))
        .count();
    if count == 0 {
        sd.shape(&format!("layer{stage}.0.conv1.weight"))?;
    }
    Ok(count)
}
