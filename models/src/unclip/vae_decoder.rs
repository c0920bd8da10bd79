//! The decoding half of diffusers' `AutoencoderKL`: latents to pixels. Stable unCLIP's pictures come out of
//! it; its encoder is never needed to serve, so the loader ignores the encoder's tensors.

use std::path::Path;

use burn::module::{ModuleMapper, Param};
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::silu;
use serde::Deserialize;

use super::blocks::{
    ResnetBlock, ResnetShape, SpatialAttention, Upsample, read_conv3x3, read_group_norm,
};
use super::weights::{read_safetensors, read_text, weights_file};
use crate::checkpoint::torch_layers::read_conv2d;
use crate::checkpoint::{CheckpointError, TorchStateDict};

const NETWORK: &str = "VAE decoder";
/// diffusers' `AutoencoderKL` builds every norm of its decoder with this epsilon.
const EPSILON: f64 = 1e-6;

/// The fields of `AutoencoderKL`'s `config.json` that shape the decoder, with diffusers' defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub out_channels: usize,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
    pub mid_block_add_attention: bool,
    pub use_post_quant_conv: bool,
    /// Decode in f32 under half precision, as diffusers does unless told otherwise: the decoder's
    /// activations can pass f16's range.
    pub force_upcast: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            out_channels: 3,
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            mid_block_add_attention: true,
            use_post_quant_conv: true,
            force_upcast: true,
        }
    }
}

impl VaeConfig {
    /// Stable Diffusion's VAE (2.1's and Stable unCLIP 2.1's): four blocks of 128 to 512 channels, eightfold.
    pub fn stable_diffusion() -> Self {
        Self {
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            ..Self::default()
        }
    }

    pub fn from_json(json: &str) -> Result<Self, CheckpointError> {
        let config: Self = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        if config.act_fn != "silu" {
            return Err(invalid(format!(
                "act_fn {:?} (only \"silu\" is implemented)",
                config.act_fn
            )));
        }
        if config.block_out_channels.is_empty()
            || config.block_out_channels.len() != config.up_block_types.len()
        {
            return Err(invalid(format!(
                "{} block widths for {} up blocks",
                config.block_out_channels.len(),
                config.up_block_types.len()
            )));
        }
        if let Some(other) = config
            .up_block_types
            .iter()
            .find(|t| *t != "UpDecoderBlock2D")
        {
            return Err(invalid(format!(
                "up block {other:?} (only UpDecoderBlock2D is implemented)"
            )));
        }
        Ok(config)
    }
}

/// The decoder's resnets: no time embedding, diffusers' epsilon for the VAE.
fn resnet_shape(channels: [usize; 2], groups: usize) -> ResnetShape {
    ResnetShape {
        channels,
        groups,
        epsilon: EPSILON,
        time_embedding: None,
    }
}

fn invalid(message: String) -> CheckpointError {
    CheckpointError::InvalidConfig {
        network: NETWORK,
        message,
    }
}

#[derive(Module, Debug)]
struct UpBlock<B: Backend> {
    resnets: Vec<ResnetBlock<B>>,
    upsample: Option<Upsample<B>>,
}

#[derive(Module, Debug)]
pub struct VaeDecoder<B: Backend> {
    post_quant_conv: Option<Conv2d<B>>,
    conv_in: Conv2d<B>,
    mid_resnets: Vec<ResnetBlock<B>>,
    mid_attention: Option<SpatialAttention<B>>,
    up_blocks: Vec<UpBlock<B>>,
    norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
}

impl<B: Backend> VaeDecoder<B> {
    /// From a diffusers `vae/` folder: `config.json` and `diffusion_pytorch_model.safetensors` (or, with
    /// `fp16`, the `.fp16.safetensors` variant).
    pub fn from_diffusers_dir(
        dir: &Path,
        fp16: bool,
        device: &B::Device,
    ) -> Result<(Self, VaeConfig), CheckpointError> {
        let json = read_text(&dir.join("config.json"))?;
        let config = VaeConfig::from_json(&json)?;
        let sd = read_safetensors(&weights_file(dir, "diffusion_pytorch_model", fp16))?
            .for_network(NETWORK, "");
        Ok((Self::read(sd, &config, device)?, config))
    }

    /// Reads the decoder's tensors; the encoder's (`encoder.*`, `quant_conv.*`) are ignored, any other
    /// unused tensor is an error naming it.
    pub fn read(
        mut sd: TorchStateDict,
        config: &VaeConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let decoder = Self::read_layers(&mut sd, config, device)?;
        sd.finish(|name| name.starts_with("encoder.") || name.starts_with("quant_conv."))?;
        Ok(decoder)
    }

    fn read_layers(
        sd: &mut TorchStateDict,
        config: &VaeConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let groups = config.norm_num_groups;
        let widths = &config.block_out_channels;
        let latent = config.latent_channels;
        let top = widths[widths.len() - 1];
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| {
                read_conv2d(
                    sd,
                    "post_quant_conv",
                    [latent, latent, 1, 1],
                    1,
                    0,
                    true,
                    device,
                )
            })
            .transpose()?;
        let conv_in = read_conv3x3(sd, "decoder.conv_in", [latent, top], device)?;
        let mid_resnets = (0..2)
            .map(|i| {
                let prefix = format!("decoder.mid_block.resnets.{i}");
                ResnetBlock::read(sd, &prefix, resnet_shape([top, top], groups), device)
            })
            .collect::<Result<_, _>>()?;
        let mid_attention = config
            .mid_block_add_attention
            .then(|| {
                SpatialAttention::read(sd, "decoder.mid_block.attentions.0", top, 1, groups, device)
            })
            .transpose()?;
        let mut up_blocks = Vec::with_capacity(widths.len());
        let mut c_in = top;
        for (i, &c_out) in widths.iter().rev().enumerate() {
            let prefix = format!("decoder.up_blocks.{i}");
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { c_in } else { c_out };
                    let name = format!("{prefix}.resnets.{j}");
                    ResnetBlock::read(sd, &name, resnet_shape([from, c_out], groups), device)
                })
                .collect::<Result<_, _>>()?;
            let last = i + 1 == widths.len();
            let upsample = (!last)
                .then(|| Upsample::read(sd, &format!("{prefix}.upsamplers.0"), c_out, device))
                .transpose()?;
            up_blocks.push(UpBlock { resnets, upsample });
            c_in = c_out;
        }
        Ok(Self {
            post_quant_conv,
            conv_in,
            mid_resnets,
            mid_attention,
            up_blocks,
            norm_out: read_group_norm(
                sd,
                "decoder.conv_norm_out",
                groups,
                widths[0],
                EPSILON,
                device,
            )?,
            conv_out: read_conv3x3(
                sd,
                "decoder.conv_out",
                [widths[0], config.out_channels],
                device,
            )?,
        })
    }

    /// The decoder with every weight in f32, whatever precision it was read in.
    pub fn in_single_precision(self) -> Self {
        self.map(&mut SinglePrecision)
    }

    /// Pixels in about [-1, 1] from latents on the VAE's own scale (the pipeline divides the diffusion's latents
    /// by `scaling_factor` first).
    pub fn forward(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents),
            None => latents,
        };
        x = self.conv_in.forward(x);
        x = self.mid_resnets[0].forward(x, None);
        if let Some(attention) = &self.mid_attention {
            x = attention.forward(x);
        }
        x = self.mid_resnets[1].forward(x, None);
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(upsample) = &block.upsample {
                x = upsample.forward(x);
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}

/// Casts every float parameter to f32.
struct SinglePrecision;

impl<B: Backend> ModuleMapper<B> for SinglePrecision {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|tensor| tensor.cast(DType::F32))
    }
}
