//! IC-GAN's discriminator `D(x, f)`: BigGAN's residual down-blocks with spectral norm, and projection
//! conditioning on the instance feature (`<linear_feat(f), h>` added to the linear output). Only training uses
//! it. Field names follow IC-GAN's `BigGAN.Discriminator`, whose state dicts [`Discriminator::from_torch`] reads.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d};
use burn::tensor::ops::ConvOptions;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, TorchNamed, TorchNames, TorchStateDict};
use crate::layers;
use crate::spectral_norm::{SpectralNormWeight, default_bias};

/// BigGAN's `SN_eps` for discriminators.
const SN_EPS: f64 = 1e-8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    /// Length of the conditioning feature.
    pub feature_dim: usize,
    /// Input channels of each block (3 for the first).
    pub block_in: Vec<usize>,
    pub block_out: Vec<usize>,
    /// Whether each block halves the resolution.
    pub downsample: Vec<bool>,
}

impl DiscriminatorConfig {
    /// BigGAN's architecture table for 64 or 128 pixel images and a width multiplier.
    pub fn biggan(ch: usize, resolution: usize, feature_dim: usize) -> Self {
        let multipliers: &[usize] = match resolution {
            64 => &[1, 2, 4, 8, 16],
            128 => &[1, 2, 4, 8, 16, 16],
            other => panic!("BigGAN's discriminator table has 64 and 128 pixels, not {other}"),
        };
        let n = multipliers.len();
        Self {
            feature_dim,
            block_in: std::iter::once(3)
                .chain(multipliers[..n - 1].iter().map(|m| m * ch))
                .collect(),
            block_out: multipliers.iter().map(|m| m * ch).collect(),
            downsample: (0..n).map(|i| i + 1 < n).collect(),
        }
    }

    /// Channels of the pooled features.
    fn width(&self) -> usize {
        *self.block_out.last().expect("a discriminator has blocks")
    }

    /// BigGAN's `DBlock` learns its shortcut where the channels change or the block downsamples.
    fn has_shortcut_conv(&self, block: usize) -> bool {
        self.block_in[block] != self.block_out[block] || self.downsample[block]
    }
}

#[derive(Module, Debug)]
pub struct SnConv<B: Backend> {
    pub weight: SpectralNormWeight<B, 4>,
    pub bias: Param<Tensor<B, 1>>,
    pub padding: usize,
}

impl<B: Backend> SnConv<B> {
    fn init(c_in: usize, c_out: usize, kernel: usize, device: &B::Device) -> Self {
        let shape = [c_out, c_in, kernel, kernel];
        Self {
            weight: SpectralNormWeight::init(shape, SN_EPS, device),
            bias: default_bias(&shape, device),
            padding: kernel / 2,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let p = self.padding;
        conv2d(
            x,
            self.weight.value(),
            Some(self.bias.val()),
            ConvOptions::new([1, 1], [p, p], [1, 1], 1),
        )
    }
}

/// BigGAN's residual down-block; the first block skips the leading ReLU and shortcuts before pooling.
#[derive(Module, Debug)]
pub struct DiscriminatorBlock<B: Backend> {
    pub conv1: SnConv<B>,
    pub conv2: SnConv<B>,
    pub conv_sc: Option<SnConv<B>>,
    pub preactivation: bool,
    pub downsample: bool,
}

impl<B: Backend> DiscriminatorBlock<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let pool = |t: Tensor<B, 4>| avg_pool2d(t, [2, 2], [2, 2], [0, 0], true, false);
        let h = if self.preactivation {
            relu(x.clone())
        } else {
            x.clone()
        };
        let mut h = self.conv2.forward(relu(self.conv1.forward(h)));
        if self.downsample {
            h = pool(h);
        }
        let mut shortcut = x;
        if self.preactivation {
            if let Some(conv) = &self.conv_sc {
                shortcut = conv.forward(shortcut);
            }
            if self.downsample {
                shortcut = pool(shortcut);
            }
        } else {
            if self.downsample {
                shortcut = pool(shortcut);
            }
            if let Some(conv) = &self.conv_sc {
                shortcut = conv.forward(shortcut);
            }
        }
        h + shortcut
    }
}

#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    pub blocks: Vec<DiscriminatorBlock<B>>,
    /// `linear`: pooled features to one score.
    pub linear: SpectralNormWeight<B, 2>,
    pub linear_bias: Param<Tensor<B, 1>>,
    /// `linear_feat`: the L2-normalised instance feature to the pooled feature's width, for the projection term.
    pub linear_feat: SpectralNormWeight<B, 2>,
    /// Its bias, which spectral norm leaves alone: through the projection it scores the pooled features
    /// whatever the instance.
    pub linear_feat_bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Discriminator<B> {
    pub fn init(config: &DiscriminatorConfig, device: &B::Device) -> Self {
        let blocks = (0..config.block_in.len())
            .map(|i| {
                let (c_in, c_out) = (config.block_in[i], config.block_out[i]);
                DiscriminatorBlock {
                    conv1: SnConv::init(c_in, c_out, 3, device),
                    conv2: SnConv::init(c_out, c_out, 3, device),
                    conv_sc: config
                        .has_shortcut_conv(i)
                        .then(|| SnConv::init(c_in, c_out, 1, device)),
                    preactivation: i > 0,
                    downsample: config.downsample[i],
                }
            })
            .collect();
        let width = config.width();
        let linear_feat_shape = [width, config.feature_dim];
        Self {
            blocks,
            linear: SpectralNormWeight::init([1, width], SN_EPS, device),
            linear_bias: default_bias(&[1, width], device),
            linear_feat: SpectralNormWeight::init(linear_feat_shape, SN_EPS, device),
            linear_feat_bias: default_bias(&linear_feat_shape, device),
        }
    }

    /// Reads a state dict of IC-GAN's `BigGAN.Discriminator` (instance-conditioned, without attention or class
    /// conditioning) of this configuration: raw weights, biases and `u0`. A missing tensor, a tensor of
    /// another shape or one left over is an error that names it.
    pub fn from_torch(
        sd: TorchStateDict,
        config: &DiscriminatorConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        Self::init(config, device).read_torch(
            sd.for_network("discriminator", ""),
            |name| name.ends_with(".sv0"),
            device,
        )
    }

    /// Images `[N, 3, H, W]` in [-1, 1] and conditioning features `[N, feature_dim]` to scores `[N]`.
    pub fn forward(&self, images: Tensor<B, 4>, features: Tensor<B, 2>) -> Tensor<B, 1> {
        let mut h = images;
        for block in &self.blocks {
            h = block.forward(h);
        }
        let [n, c, _, _] = h.dims();
        let pooled: Tensor<B, 2> = relu(h).sum_dim(2).sum_dim(3).reshape([n, c]);
        let score = pooled
            .clone()
            .matmul(self.linear.value().transpose())
            .add(self.linear_bias.val().reshape([1, 1]));
        let projection = layers::l2_normalise(features)
            .matmul(self.linear_feat.value().transpose())
            .add(self.linear_feat_bias.val().reshape([1, c]));
        (score + (projection * pooled).sum_dim(1)).reshape([n])
    }
}

impl<B: Backend> TorchNamed<B> for Discriminator<B> {
    /// IC-GAN's names.
    fn visit_torch_names<N: TorchNames<B>>(
        &mut self,
        names: &mut N,
    ) -> Result<(), CheckpointError> {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let convs = [
                ("conv1", Some(&mut block.conv1)),
                ("conv2", Some(&mut block.conv2)),
                ("conv_sc", block.conv_sc.as_mut()),
            ];
            for (name, conv) in convs {
                if let Some(conv) = conv {
                    let p = format!("blocks.{i}.0.{name}");
                    names.sn_weight(&p, &mut conv.weight)?;
                    names.param(&format!("{p}.bias"), &mut conv.bias)?;
                }
            }
        }
        names.sn_weight("linear", &mut self.linear)?;
        names.param("linear.bias", &mut self.linear_bias)?;
        names.sn_weight("linear_feat", &mut self.linear_feat)?;
        names.param("linear_feat.bias", &mut self.linear_feat_bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TensorSnapshot;
    use burn::backend::Flex;
    use std::collections::HashMap;

    #[test]
    fn scores_one_number_per_image_at_64_pixels() {
        let device = Default::default();
        let config = DiscriminatorConfig::biggan(4, 64, 32);
        let d = Discriminator::<Flex>::init(&config, &device);
        let x = Tensor::random([2, 3, 64, 64], burn::tensor::Distribution::Default, &device);
        let f = Tensor::random([2, 32], burn::tensor::Distribution::Default, &device);
        let s = d.forward(x, f);
        assert_eq!(s.dims(), [2]);
        let values = s.into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn its_state_dict_reads_back_and_a_mismatched_one_is_named() {
        let device = Default::default();
        let config = DiscriminatorConfig::biggan(2, 64, 8);
        let d = Discriminator::<Flex>::init(&config, &device);
        let sd = d.torch_state_dict();
        let read = |sd: &HashMap<String, TensorSnapshot>, config: &DiscriminatorConfig| {
            Discriminator::<Flex>::from_torch(
                TorchStateDict::from_tensors(sd.clone()),
                config,
                &device,
            )
        };
        let loaded = read(&sd, &config).unwrap();
        let x = Tensor::random([2, 3, 64, 64], burn::tensor::Distribution::Default, &device);
        let f = Tensor::random([2, 8], burn::tensor::Distribution::Default, &device);
        assert_eq!(
            d.forward(x.clone(), f.clone()).into_data(),
            loaded.forward(x, f).into_data()
        );

        let err = read(&sd, &DiscriminatorConfig::biggan(4, 64, 8))
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocks.0.0.conv1.weight"), "{err}");
        let mut extra = sd;
        extra.insert("embed.weight".into(), extra["linear.bias"].clone());
        let err = read(&extra, &config).unwrap_err().to_string();
        assert!(err.contains("embed.weight"), "{err}");
    }
}
