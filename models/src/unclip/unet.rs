//! diffusers' `UNet2DConditionModel` as Stable unCLIP 2.1 configures it: sinusoidal time embedding plus the
//! projected class embedding (the noised image embedding), down blocks with and without cross-attention, a
//! cross-attention middle block, up blocks fed the down path's states, and the v-prediction out.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::Deserialize;

use super::blocks::{
    Downsample, ResnetBlock, ResnetShape, ScorePrecision, Upsample, read_conv3x3, read_group_norm,
};
use super::transformer::{Transformer2d, TransformerShape};
use super::weights::{read_safetensors, read_text, weights_file};
use crate::checkpoint::torch_layers::read_linear;
use crate::checkpoint::{CheckpointError, TorchStateDict};

const NETWORK: &str = "UNet";

/// A number or one per block, as diffusers' configurations write `attention_head_dim`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, block: usize) -> Option<usize> {
        match self {
            Self::One(n) => Some(*n),
            Self::Each(values) => values.get(block).copied(),
        }
    }
}

/// The fields of `UNet2DConditionModel`'s `config.json` this port reads, with diffusers' defaults; the
/// variants it does not implement are refused by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UnetConfig {
    pub sample_size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub cross_attention_dim: usize,
    pub attention_head_dim: PerBlock,
    pub num_attention_heads: Option<PerBlock>,
    pub use_linear_projection: bool,
    /// Attention scores in f32 under half precision (Stable Diffusion 2.1 and its unCLIP set it).
    pub upcast_attention: bool,
    pub class_embed_type: Option<String>,
    pub projection_class_embeddings_input_dim: Option<usize>,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub act_fn: String,
    pub time_embedding_type: String,
    pub addition_embed_type: Option<String>,
    pub only_cross_attention: bool,
    pub dual_cross_attention: bool,
    pub resnet_time_scale_shift: String,
    pub center_input_sample: bool,
    pub transformer_layers_per_block: usize,
    pub encoder_hid_dim: Option<usize>,
    pub time_cond_proj_dim: Option<usize>,
    pub class_embeddings_concat: bool,
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            sample_size: 64,
            in_channels: 4,
            out_channels: 4,
            down_block_types: [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            up_block_types: [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 1280,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            use_linear_projection: false,
            upcast_attention: false,
            class_embed_type: None,
            projection_class_embeddings_input_dim: None,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            act_fn: "silu".into(),
            time_embedding_type: "positional".into(),
            addition_embed_type: None,
            only_cross_attention: false,
            dual_cross_attention: false,
            resnet_time_scale_shift: "default".into(),
            center_input_sample: false,
            transformer_layers_per_block: 1,
            encoder_hid_dim: None,
            time_cond_proj_dim: None,
            class_embeddings_concat: false,
        }
    }
}

impl UnetConfig {
    /// Stable unCLIP 2.1's UNet (`stabilityai/stable-diffusion-2-1-unclip`): Stable Diffusion 2.1's with the
    /// projection class embedding for the 1024-d image embedding and its noise level.
    pub fn stable_unclip_2_1() -> Self {
        Self {
            sample_size: 96,
            attention_head_dim: PerBlock::Each(vec![5, 10, 20, 20]),
            cross_attention_dim: 1024,
            use_linear_projection: true,
            upcast_attention: true,
            class_embed_type: Some("projection".into()),
            projection_class_embeddings_input_dim: Some(2048),
            ..Self::default()
        }
    }

    pub fn from_json(json: &str) -> Result<Self, CheckpointError> {
        let config: Self = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), CheckpointError> {
        let refuse =
            |what: String| Err(invalid(format!("{what} (this port does not implement it)")));
        let blocks = self.block_out_channels.len();
        if blocks == 0
            || self.down_block_types.len() != blocks
            || self.up_block_types.len() != blocks
        {
            return Err(invalid(format!(
                "{blocks} block widths for {} down and {} up blocks",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        if let Some(t) = self
            .down_block_types
            .iter()
            .find(|t| !matches!(t.as_str(), "CrossAttnDownBlock2D" | "DownBlock2D"))
        {
            return refuse(format!("down block {t:?}"));
        }
        if let Some(t) = self
            .up_block_types
            .iter()
            .find(|t| !matches!(t.as_str(), "CrossAttnUpBlock2D" | "UpBlock2D"))
        {
            return refuse(format!("up block {t:?}"));
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return refuse(format!("mid_block_type {:?}", self.mid_block_type));
        }
        if !matches!(self.class_embed_type.as_deref(), None | Some("projection")) {
            return refuse(format!("class_embed_type {:?}", self.class_embed_type));
        }
        for (field, value, expected) in [
            ("act_fn", self.act_fn.as_str(), "silu"),
            (
                "time_embedding_type",
                self.time_embedding_type.as_str(),
                "positional",
            ),
            (
                "resnet_time_scale_shift",
                self.resnet_time_scale_shift.as_str(),
                "default",
            ),
        ] {
            if value != expected {
                return refuse(format!("{field} {value:?}"));
            }
        }
        for (field, asked) in [
            ("addition_embed_type", self.addition_embed_type.is_some()),
            ("only_cross_attention", self.only_cross_attention),
            ("dual_cross_attention", self.dual_cross_attention),
            ("center_input_sample", self.center_input_sample),
            (
                "transformer_layers_per_block other than 1",
                self.transformer_layers_per_block != 1,
            ),
            ("encoder_hid_dim", self.encoder_hid_dim.is_some()),
            ("time_cond_proj_dim", self.time_cond_proj_dim.is_some()),
            ("class_embeddings_concat", self.class_embeddings_concat),
        ] {
            if asked {
                return refuse(field.to_string());
            }
        }
        for block in 0..blocks {
            if self.heads(block).is_none() {
                return Err(invalid(format!(
                    "no attention head count for block {block}"
                )));
            }
        }
        Ok(())
    }

    /// Attention heads of a block. diffusers reads `attention_head_dim` as the head count where
    /// `num_attention_heads` is not given (a naming it keeps for Stable Diffusion's configurations).
    fn heads(&self, block: usize) -> Option<usize> {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .get(block)
    }

    fn time_width(&self) -> usize {
        self.block_out_channels[0] * 4
    }
}

fn invalid(message: String) -> CheckpointError {
    CheckpointError::InvalidConfig {
        network: NETWORK,
        message,
    }
}

/// `TimestepEmbedding`: linear, SiLU, linear.
#[derive(Module, Debug)]
struct Embedding<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
}

impl<B: Backend> Embedding<B> {
    fn read(
        sd: &mut TorchStateDict,
        prefix: &str,
        [input, width]: [usize; 2],
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            linear_1: read_linear(
                sd,
                &format!("{prefix}.linear_1"),
                [width, input],
                true,
                device,
            )?,
            linear_2: read_linear(
                sd,
                &format!("{prefix}.linear_2"),
                [width, width],
                true,
                device,
            )?,
        })
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

/// A resnet and, in cross-attention blocks, the transformer after it.
#[derive(Module, Debug)]
struct Layer<B: Backend> {
    resnet: ResnetBlock<B>,
    transformer: Option<Transformer2d<B>>,
}

impl<B: Backend> Layer<B> {
    fn forward(
        &self,
        x: Tensor<B, 4>,
        time: &Tensor<B, 2>,
        context: &Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        let x = self.resnet.forward(x, Some(time));
        match &self.transformer {
            Some(transformer) => transformer.forward(x, context.clone()),
            None => x,
        }
    }
}

#[derive(Module, Debug)]
struct DownBlock<B: Backend> {
    layers: Vec<Layer<B>>,
    downsample: Option<Downsample<B>>,
}

#[derive(Module, Debug)]
struct UpBlock<B: Backend> {
    layers: Vec<Layer<B>>,
    upsample: Option<Upsample<B>>,
}

#[derive(Module, Debug)]
pub struct Unet<B: Backend> {
    time_embedding: Embedding<B>,
    class_embedding: Option<Embedding<B>>,
    conv_in: Conv2d<B>,
    down_blocks: Vec<DownBlock<B>>,
    mid_first: ResnetBlock<B>,
    mid_transformer: Transformer2d<B>,
    mid_second: ResnetBlock<B>,
    up_blocks: Vec<UpBlock<B>>,
    norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
    /// The sinusoidal embedding's width, its frequency shift and whether cosines come first.
    #[module(skip)]
    time_channels: usize,
    #[module(skip)]
    freq_shift: f64,
    #[module(skip)]
    flip_sin_to_cos: bool,
}

/// Reads the UNet's layers in the order diffusers names them, tracking the widths of the down path's states.
struct Reader<'a> {
    sd: &'a mut TorchStateDict,
    config: &'a UnetConfig,
}

impl Reader<'_> {
    fn resnet<B: Backend>(
        &mut self,
        prefix: &str,
        channels: [usize; 2],
        device: &B::Device,
    ) -> Result<ResnetBlock<B>, CheckpointError> {
        let shape = ResnetShape {
            channels,
            groups: self.config.norm_num_groups,
            epsilon: self.config.norm_eps,
            time_embedding: Some(self.config.time_width()),
        };
        ResnetBlock::read(self.sd, prefix, shape, device)
    }

    fn transformer<B: Backend>(
        &mut self,
        prefix: &str,
        channels: usize,
        block: usize,
        device: &B::Device,
    ) -> Result<Transformer2d<B>, CheckpointError> {
        let shape = TransformerShape {
            channels,
            heads: self.config.heads(block).unwrap_or(1),
            groups: self.config.norm_num_groups,
            context_width: self.config.cross_attention_dim,
            linear_projection: self.config.use_linear_projection,
            scores: if self.config.upcast_attention {
                ScorePrecision::Upcast
            } else {
                ScorePrecision::Native
            },
        };
        Transformer2d::read(self.sd, prefix, shape, device)
    }

    fn layer<B: Backend>(
        &mut self,
        prefix: &str,
        channels: [usize; 2],
        attention: Option<usize>,
        j: usize,
        device: &B::Device,
    ) -> Result<Layer<B>, CheckpointError> {
        Ok(Layer {
            resnet: self.resnet(&format!("{prefix}.resnets.{j}"), channels, device)?,
            transformer: attention
                .map(|block| {
                    self.transformer(
                        &format!("{prefix}.attentions.{j}"),
                        channels[1],
                        block,
                        device,
                    )
                })
                .transpose()?,
        })
    }
}

impl<B: Backend> Unet<B> {
    /// From a diffusers `unet/` folder: `config.json` and `diffusion_pytorch_model[.fp16].safetensors`.
    pub fn from_diffusers_dir(
        dir: &Path,
        fp16: bool,
        device: &B::Device,
    ) -> Result<(Self, UnetConfig), CheckpointError> {
        let json = read_text(&dir.join("config.json"))?;
        let config = UnetConfig::from_json(&json)?;
        let sd = read_safetensors(&weights_file(dir, "diffusion_pytorch_model", fp16))?
            .for_network(NETWORK, "");
        Ok((Self::read(sd, &config, device)?, config))
    }

    /// Reads every tensor of the UNet; one left over is an error naming it.
    pub fn read(
        mut sd: TorchStateDict,
        config: &UnetConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        config.check()?;
        let unet = Self::read_layers(
            &mut Reader {
                sd: &mut sd,
                config,
            },
            device,
        )?;
        sd.finish(|_| false)?;
        Ok(unet)
    }

    fn read_layers(r: &mut Reader<'_>, device: &B::Device) -> Result<Self, CheckpointError> {
        let config = r.config;
        let widths = &config.block_out_channels;
        let time_width = config.time_width();
        let time_embedding =
            Embedding::read(r.sd, "time_embedding", [widths[0], time_width], device)?;
        let class_embedding = match config.class_embed_type.as_deref() {
            Some(_) => {
                let input = config.projection_class_embeddings_input_dim.ok_or_else(|| {
                    invalid("class_embed_type \"projection\" needs projection_class_embeddings_input_dim".into())
                })?;
                Some(Embedding::read(
                    r.sd,
                    "class_embedding",
                    [input, time_width],
                    device,
                )?)
            }
            None => None,
        };
        let conv_in = read_conv3x3(r.sd, "conv_in", [config.in_channels, widths[0]], device)?;
        let mut state_widths = vec![widths[0]];
        let mut down_blocks = Vec::new();
        let mut c_in = widths[0];
        for (i, (&c_out, kind)) in widths.iter().zip(&config.down_block_types).enumerate() {
            let prefix = format!("down_blocks.{i}");
            let attention = (kind == "CrossAttnDownBlock2D").then_some(i);
            let mut layers = Vec::new();
            for j in 0..config.layers_per_block {
                let from = if j == 0 { c_in } else { c_out };
                layers.push(r.layer(&prefix, [from, c_out], attention, j, device)?);
                state_widths.push(c_out);
            }
            let last = i + 1 == widths.len();
            let downsample = (!last)
                .then(|| Downsample::read(r.sd, &format!("{prefix}.downsamplers.0"), c_out, device))
                .transpose()?;
            if !last {
                state_widths.push(c_out);
            }
            down_blocks.push(DownBlock { layers, downsample });
            c_in = c_out;
        }
        let top = widths[widths.len() - 1];
        let blocks = widths.len();
        let mid_first = r.resnet("mid_block.resnets.0", [top, top], device)?;
        let mid_transformer = r.transformer("mid_block.attentions.0", top, blocks - 1, device)?;
        let mid_second = r.resnet("mid_block.resnets.1", [top, top], device)?;
        let mut up_blocks = Vec::new();
        let mut previous = top;
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let c_out = widths[blocks - 1 - i];
            let prefix = format!("up_blocks.{i}");
            let attention = (kind == "CrossAttnUpBlock2D").then_some(blocks - 1 - i);
            let mut layers = Vec::new();
            for j in 0..=config.layers_per_block {
                let skip = state_widths.pop().ok_or_else(|| {
                    invalid("the up path outnumbers the down path's states".into())
                })?;
                let from = if j == 0 { previous } else { c_out };
                layers.push(r.layer(&prefix, [from + skip, c_out], attention, j, device)?);
            }
            let last = i + 1 == blocks;
            let upsample = (!last)
                .then(|| Upsample::read(r.sd, &format!("{prefix}.upsamplers.0"), c_out, device))
                .transpose()?;
            up_blocks.push(UpBlock { layers, upsample });
            previous = c_out;
        }
        Ok(Self {
            time_embedding,
            class_embedding,
            conv_in,
            down_blocks,
            mid_first,
            mid_transformer,
            mid_second,
            up_blocks,
            norm_out: read_group_norm(
                r.sd,
                "conv_norm_out",
                config.norm_num_groups,
                widths[0],
                config.norm_eps,
                device,
            )?,
            conv_out: read_conv3x3(r.sd, "conv_out", [widths[0], config.out_channels], device)?,
            time_channels: widths[0],
            freq_shift: config.freq_shift,
            flip_sin_to_cos: config.flip_sin_to_cos,
        })
    }

    /// The model's output for `latents` `[batch, c, h, w]` at `timesteps` (one per sample), attending to
    /// `text_states` `[batch, tokens, width]`, with `class_input` `[batch, width]` (unCLIP's noised image
    /// embedding and its noise level's embedding) where the UNet has a class embedding.
    pub fn forward(
        &self,
        latents: Tensor<B, 4>,
        timesteps: &[f32],
        text_states: Tensor<B, 3>,
        class_input: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 4> {
        let device = latents.device();
        let sinusoids = timestep_embedding(
            timesteps,
            self.time_channels,
            self.freq_shift,
            self.flip_sin_to_cos,
        );
        let sinusoids = Tensor::from_data(
            TensorData::new(sinusoids, [timesteps.len(), self.time_channels]),
            &device,
        );
        let mut time = self.time_embedding.forward(sinusoids);
        if let (Some(class_embedding), Some(class_input)) = (&self.class_embedding, class_input) {
            time = time + class_embedding.forward(class_input);
        }
        let mut x = self.conv_in.forward(latents);
        let mut states = vec![x.clone()];
        for block in &self.down_blocks {
            for layer in &block.layers {
                x = layer.forward(x, &time, &text_states);
                states.push(x.clone());
            }
            if let Some(downsample) = &block.downsample {
                x = downsample.forward(x);
                states.push(x.clone());
            }
        }
        x = self.mid_first.forward(x, Some(&time));
        x = self.mid_transformer.forward(x, text_states.clone());
        x = self.mid_second.forward(x, Some(&time));
        for block in &self.up_blocks {
            for layer in &block.layers {
                // `read` checked that every up layer has a state to take.
                let skip = states.pop().unwrap_or_else(|| x.clone());
                x = layer.forward(Tensor::cat(vec![x, skip], 1), &time, &text_states);
            }
            if let Some(upsample) = &block.upsample {
                x = upsample.forward(x);
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}

/// diffusers' `get_timestep_embedding` in f32 as PyTorch computes it: frequencies
/// `exp(-ln(10000) * i / (half - shift))`, sines then cosines of `t` times each (cosines first when flipped).
pub(super) fn timestep_embedding(
    timesteps: &[f32],
    channels: usize,
    shift: f64,
    flip: bool,
) -> Vec<f32> {
    let half = channels / 2;
    let log_period = -(10000f64.ln()) as f32;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / (half as f32 - shift as f32)).exp())
        .collect();
    let mut values = Vec::with_capacity(timesteps.len() * channels);
    for &t in timesteps {
        let angles: Vec<f32> = frequencies.iter().map(|f| t * f).collect();
        let sines = angles.iter().map(|a| a.sin());
        let cosines = angles.iter().map(|a| a.cos());
        let row: Vec<f32> = if flip {
            cosines.chain(sines).collect()
        } else {
            sines.chain(cosines).collect()
        };
        values.extend(row);
        values.extend(std::iter::repeat_n(0.0, channels - 2 * half));
    }
    values
}
