//! The text encoder of Stable unCLIP (transformers' `CLIPTextModel`), run once at conversion: the model is
//! always prompted with the empty prompt, so its states are a constant that the converted model stores, and
//! serving needs neither a tokenizer nor this network.

use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use serde::Deserialize;

use super::blocks::{ScorePrecision, multi_head_attention, read_layer_norm};
use super::weights::{read_safetensors, read_text, weights_file};
use crate::checkpoint::torch_layers::read_linear;
use crate::checkpoint::{CheckpointError, TorchStateDict};

const NETWORK: &str = "text encoder";

/// The fields of `CLIPTextConfig` the encoder's shape follows from.
#[derive(Debug, Clone, Deserialize)]
pub struct TextEncoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    #[serde(default = "default_epsilon")]
    pub layer_norm_eps: f64,
}

fn default_epsilon() -> f64 {
    1e-5
}

fn invalid(message: String) -> CheckpointError {
    CheckpointError::InvalidConfig {
        network: NETWORK,
        message,
    }
}

#[derive(Module, Debug)]
struct EncoderLayer<B: Backend> {
    layer_norm1: LayerNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    out_proj: Linear<B>,
    layer_norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

#[derive(Module, Debug)]
pub struct TextEncoder<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: Tensor<B, 2>,
    layers: Vec<EncoderLayer<B>>,
    final_layer_norm: LayerNorm<B>,
    #[module(skip)]
    heads: usize,
    /// OpenAI's CLIP uses `quick_gelu`; OpenCLIP's (Stable Diffusion 2's) the exact GELU.
    #[module(skip)]
    quick_gelu: bool,
}

impl<B: Backend> TextEncoder<B> {
    /// From a diffusers `text_encoder/` folder: `config.json` and `model.safetensors` (or, with `fp16`,
    /// `model.fp16.safetensors`).
    pub fn from_dir(dir: &Path, fp16: bool, device: &B::Device) -> Result<Self, CheckpointError> {
        let json = read_text(&dir.join("config.json"))?;
        let config: TextEncoderConfig =
            serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
        let sd = read_safetensors(&weights_file(dir, "model", fp16))?
            // Files written before transformers 5 put every name under `text_model.`.
            .for_network(NETWORK, "text_model.");
        Self::read(sd, &config, device)
    }

    pub fn read(
        mut sd: TorchStateDict,
        config: &TextEncoderConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let quick_gelu = match config.hidden_act.as_str() {
            "gelu" => false,
            "quick_gelu" => true,
            other => {
                return Err(invalid(format!(
                    "hidden_act {other:?} (only gelu and quick_gelu are implemented)"
                )));
            }
        };
        let (width, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(invalid(format!(
                "{width} channels cannot form {heads} heads"
            )));
        }
        let eps = config.layer_norm_eps;
        let token_embedding = Embedding {
            weight: Param::from_tensor(sd.take(
                "embeddings.token_embedding.weight",
                [config.vocab_size, width],
                device,
            )?),
        };
        let position_embedding = sd.take(
            "embeddings.position_embedding.weight",
            [config.max_position_embeddings, width],
            device,
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layers.{i}");
            let mut linear = |name: &str, shape: [usize; 2]| {
                read_linear(&mut sd, &format!("{p}.{name}"), shape, true, device)
            };
            let (q_proj, k_proj, v_proj, out_proj) = (
                linear("self_attn.q_proj", [width, width])?,
                linear("self_attn.k_proj", [width, width])?,
                linear("self_attn.v_proj", [width, width])?,
                linear("self_attn.out_proj", [width, width])?,
            );
            let fc1 = linear("mlp.fc1", [config.intermediate_size, width])?;
            let fc2 = linear("mlp.fc2", [width, config.intermediate_size])?;
            layers.push(EncoderLayer {
                layer_norm1: read_layer_norm(
                    &mut sd,
                    &format!("{p}.layer_norm1"),
                    width,
                    eps,
                    device,
                )?,
                q_proj,
                k_proj,
                v_proj,
                out_proj,
                layer_norm2: read_layer_norm(
                    &mut sd,
                    &format!("{p}.layer_norm2"),
                    width,
                    eps,
                    device,
                )?,
                fc1,
                fc2,
            });
        }
        let final_layer_norm = read_layer_norm(&mut sd, "final_layer_norm", width, eps, device)?;
        // `position_ids` is a buffer older transformers saved; the projection belongs to `CLIPTextModelWithProjection`.
        sd.finish(|name| name.ends_with("position_ids"))?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            heads,
            quick_gelu,
        })
    }

    /// The states `[1, length, width]` after the final layer norm for token `ids` (as `last_hidden_state`).
    pub fn forward(&self, ids: &[usize]) -> Result<Tensor<B, 3>, CheckpointError> {
        let [positions, width] = self.position_embedding.dims();
        let vocab = self.token_embedding.weight.dims()[0];
        if ids.is_empty() || ids.len() > positions || ids.iter().any(|&id| id >= vocab) {
            return Err(invalid(format!(
                "token ids must be 1 to {positions} ids below {vocab}, got {} ids",
                ids.len()
            )));
        }
        let device = self.position_embedding.device();
        let length = ids.len();
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, length]), &device);
        let mut x = self.token_embedding.forward(ids)
            + self
                .position_embedding
                .clone()
                .narrow(0, 0, length)
                .reshape([1, length, width]);
        for layer in &self.layers {
            x = x.clone() + self.attention(layer, layer.layer_norm1.forward(x));
            let hidden = layer.fc1.forward(layer.layer_norm2.forward(x.clone()));
            let hidden = if self.quick_gelu {
                hidden.clone() * sigmoid(hidden.mul_scalar(1.702))
            } else {
                gelu(hidden)
            };
            x = x + layer.fc2.forward(hidden);
        }
        Ok(self.final_layer_norm.forward(x))
    }

    /// Causal self-attention: each token attends to itself and the tokens before it.
    fn attention(&self, layer: &EncoderLayer<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let attended = multi_head_attention(
            layer.q_proj.forward(x.clone()),
            layer.k_proj.forward(x.clone()),
            layer.v_proj.forward(x),
            self.heads,
            true,
            ScorePrecision::Native,
        );
        layer.out_proj.forward(attended)
    }
}

/// The empty prompt as diffusers' pipelines tokenise it: the start token, the end token, then the padding
/// token up to the tokenizer's length, read from a `tokenizer/` folder (`vocab.json`,
/// `special_tokens_map.json`, `tokenizer_config.json`'s `model_max_length`).
pub fn empty_prompt_ids(tokenizer: &Path) -> Result<Vec<usize>, CheckpointError> {
    let read = |name: &str| -> Result<serde_json::Value, CheckpointError> {
        let path = tokenizer.join(name);
        let text = read_text(&path)?;
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
    };
    let vocab: HashMap<String, usize> = serde_json::from_value(read("vocab.json")?)
        .map_err(|e| invalid(format!("vocab.json: {e}")))?;
    let special = read("special_tokens_map.json")?;
    let token = |role: &str| -> Result<usize, CheckpointError> {
        // A special token is written as a string or as `{"content": ...}`.
        let entry = &special[role];
        let text = entry
            .as_str()
            .or_else(|| entry["content"].as_str())
            .ok_or_else(|| invalid(format!("special_tokens_map.json has no {role}")))?;
        vocab
            .get(text)
            .copied()
            .ok_or_else(|| invalid(format!("the {role} {text:?} is not in vocab.json")))
    };
    let length = read("tokenizer_config.json")?["model_max_length"]
        .as_u64()
        .filter(|&n| (2..=4096).contains(&n))
        .ok_or_else(|| {
            invalid("tokenizer_config.json needs a model_max_length from 2 to 4096".into())
        })? as usize;
    let (start, end, pad) = (
        token("bos_token")?,
        token("eos_token")?,
        token("pad_token")?,
    );
    let mut ids = vec![start, end];
    ids.resize(length, pad);
    Ok(ids)
}
