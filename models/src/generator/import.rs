//! IC-GAN's generator read from its PyTorch state dict (`G_ema_best0.pth`): the architecture off the tensor
//! shapes, spectral norm folded into each weight once (eval mode never advances `u0`).

use burn::module::{Param, RunningState};
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::{
    Attention, ConditionalBatchNorm, GENERATOR_SN_EPS, Generator, GeneratorBlock, GeneratorConfig,
    GeneratorStage,
};
use crate::checkpoint::torch_layers::{
    linear_from_out_in, read_batch_norm_named, read_spectral_normalised,
};
use crate::checkpoint::{CheckpointError, FromTorch, TorchStateDict};
use crate::layers::conv_from_tensors;
use crate::norm::BN_EPS;
use crate::{NetworkKind, NetworkModule};

impl<B: Backend> ConditionalBatchNorm<B> {
    fn from_torch(
        sd: &mut TorchStateDict,
        prefix: &str,
        channels: usize,
        cond: usize,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let sn_linear =
            |sd: &mut TorchStateDict, name: &str| -> Result<Linear<B>, CheckpointError> {
                let values = read_spectral_normalised(
                    sd,
                    &format!("{prefix}.{name}"),
                    &[channels, cond],
                    GENERATOR_SN_EPS,
                )?;
                Ok(linear_from_out_in(values, [channels, cond], None, device))
            };
        Ok(Self {
            gain: sn_linear(sd, "gain")?,
            bias: sn_linear(sd, "bias")?,
            stored_mean: RunningState::new(sd.take(
                &format!("{prefix}.stored_mean"),
                [channels],
                device,
            )?),
            stored_var: RunningState::new(sd.take(
                &format!("{prefix}.stored_var"),
                [channels],
                device,
            )?),
            epsilon: BN_EPS,
        })
    }
}

/// A spectrally normalised convolution, read from `{prefix}.weight`, `{prefix}.u0` (and `{prefix}.bias`).
fn sn_conv<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    shape: [usize; 4],
    bias: bool,
    device: &B::Device,
) -> Result<Conv2d<B>, CheckpointError> {
    let values = read_spectral_normalised(sd, prefix, &shape, GENERATOR_SN_EPS)?;
    let weight = Tensor::from_data(TensorData::new(values, shape), device);
    let bias = if bias {
        Some(Param::from_tensor(sd.take(
            &format!("{prefix}.bias"),
            [shape[0]],
            device,
        )?))
    } else {
        None
    };
    Ok(conv_from_tensors(weight, bias, 1, shape[2] / 2))
}

fn sn_linear<B: Backend>(
    sd: &mut TorchStateDict,
    prefix: &str,
    shape: [usize; 2],
    device: &B::Device,
) -> Result<Linear<B>, CheckpointError> {
    let values = read_spectral_normalised(sd, prefix, &shape, GENERATOR_SN_EPS)?;
    let bias = sd.take(&format!("{prefix}.bias"), [shape[0]], device)?;
    Ok(linear_from_out_in(values, shape, Some(bias), device))
}

/// Training logs, and the class embedding that instance conditioning never reads.
pub(crate) fn is_ignored(name: &str) -> bool {
    name.ends_with(".sv0") || name == "shared.weight"
}

impl<B: Backend> FromTorch<B> for Generator<B> {
    fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        let mut sd = sd.for_network(Self::KIND.name(), "");
        let config = infer_config(&sd)?;
        let cond = config.cbn_input();
        let bw2 = config.bottom_width * config.bottom_width;
        let shared_feat = sn_linear(
            &mut sd,
            "shared_feat",
            [config.shared_dim_feat, config.feature_dim],
            device,
        )?;
        let linear = sn_linear(
            &mut sd,
            "linear",
            [config.block_in[0] * bw2, config.z_chunk],
            device,
        )?;
        let mut stages = Vec::new();
        for i in 0..config.blocks() {
            let (c_in, c_out) = (config.block_in[i], config.block_out[i]);
            let p = format!("blocks.{i}.0");
            let block = GeneratorBlock {
                bn1: ConditionalBatchNorm::from_torch(
                    &mut sd,
                    &format!("{p}.bn1"),
                    c_in,
                    cond,
                    device,
                )?,
                conv1: sn_conv(
                    &mut sd,
                    &format!("{p}.conv1"),
                    [c_out, c_in, 3, 3],
                    true,
                    device,
                )?,
                bn2: ConditionalBatchNorm::from_torch(
                    &mut sd,
                    &format!("{p}.bn2"),
                    c_out,
                    cond,
                    device,
                )?,
                conv2: sn_conv(
                    &mut sd,
                    &format!("{p}.conv2"),
                    [c_out, c_out, 3, 3],
                    true,
                    device,
                )?,
                conv_sc: sn_conv(
                    &mut sd,
                    &format!("{p}.conv_sc"),
                    [c_out, c_in, 1, 1],
                    true,
                    device,
                )?,
            };
            let attention = if config.attention[i] {
                let a = format!("blocks.{i}.1");
                Some(Attention {
                    theta: sn_conv(
                        &mut sd,
                        &format!("{a}.theta"),
                        [c_out / 8, c_out, 1, 1],
                        false,
                        device,
                    )?,
                    phi: sn_conv(
                        &mut sd,
                        &format!("{a}.phi"),
                        [c_out / 8, c_out, 1, 1],
                        false,
                        device,
                    )?,
                    g: sn_conv(
                        &mut sd,
                        &format!("{a}.g"),
                        [c_out / 2, c_out, 1, 1],
                        false,
                        device,
                    )?,
                    o: sn_conv(
                        &mut sd,
                        &format!("{a}.o"),
                        [c_out, c_out / 2, 1, 1],
                        false,
                        device,
                    )?,
                    gamma: Param::from_tensor(sd.take(&format!("{a}.gamma"), [1], device)?),
                })
            } else {
                None
            };
            stages.push(GeneratorStage { block, attention });
        }
        let last = *config.block_out.last().expect("validated non-empty");
        let output_bn = read_batch_norm_named(
            &mut sd,
            "output_layer.0",
            ["gain", "bias"],
            last,
            BN_EPS,
            device,
        )?;
        let output_conv = sn_conv(&mut sd, "output_layer.2", [3, last, 3, 3], true, device)?;
        sd.finish(is_ignored)?;
        Ok(Self {
            shared_feat,
            linear,
            stages,
            output_bn,
            output_conv,
            config,
        })
    }
}

/// Reads the architecture off the tensor shapes of an IC-GAN state dict.
pub(crate) fn infer_config(sd: &TorchStateDict) -> Result<GeneratorConfig, CheckpointError> {
    let network = NetworkKind::Generator.name();
    let invalid = |message: String| CheckpointError::InvalidConfig { network, message };
    let shared = sd.shape("shared_feat.weight")?;
    let [shared_dim_feat, feature_dim] = shared[..] else {
        return Err(invalid("shared_feat.weight must be 2-d".into()));
    };
    let linear = sd.shape("linear.weight")?;
    let [linear_out, z_chunk] = linear[..] else {
        return Err(invalid("linear.weight must be 2-d".into()));
    };
    let blocks = (0..)
        .take_while(|i| sd.contains(&format!("blocks.{i}.0.conv1.weight")))
        .count();
    if blocks == 0 {
        sd.shape("blocks.0.0.conv1.weight")?;
    }
    let mut block_in = Vec::new();
    let mut block_out = Vec::new();
    let mut attention = Vec::new();
    for i in 0..blocks {
        let conv1 = sd.shape(&format!("blocks.{i}.0.conv1.weight"))?;
        if conv1.len() != 4 {
            return Err(invalid(format!("blocks.{i}.0.conv1.weight must be 4-d")));
        }
        block_out.push(conv1[0]);
        block_in.push(conv1[1]);
        attention.push(sd.contains(&format!("blocks.{i}.1.theta.weight")));
    }
    // The first linear layer fills a bottom_width x bottom_width map of the first block's channels.
    let bottom_area = linear_out / block_in[0];
    let bottom_width = (bottom_area as f64).sqrt().round() as usize;
    if bottom_width * bottom_width * block_in[0] != linear_out {
        return Err(invalid(format!(
            "linear.weight gives {linear_out} values, not a square map of {} channels",
            block_in[0]
        )));
    }
    let unused_class_embedding = sd.shape("shared.weight").ok().and_then(|s| match s[..] {
        [classes, dim] => Some((classes, dim)),
        _ => None,
    });
    let config = GeneratorConfig {
        feature_dim,
        shared_dim_feat,
        z_chunk,
        bottom_width,
        block_in,
        block_out,
        attention,
        unused_class_embedding,
    };
    config.validate()?;
    Ok(config)
}
