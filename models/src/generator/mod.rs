//! IC-GAN's instance-conditioned BigGAN generator `G(z, f)` (inference).
//!
//! Faithful to `BigGAN_PyTorch/BigGAN.py` with `hier=True` and `G_shared_feat=True`: the feature `f` is
//! L2-normalised here and embedded by `shared_feat`; z is split into `blocks + 1` chunks, the first feeding the
//! first linear layer and chunk `i + 1` conditioning block `i` as `[y, z_chunk]` (y first); conditional batch
//! norm uses the stored statistics with gain `1 + Linear(y)` and bias `Linear(y)`; spectral norm is folded into
//! the weights at load time (see `checkpoint::torch_layers::read_spectral_normalised`).

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
use crate::fused::{self, ChannelNorm, Epilogue};
use crate::layers::{self, init_conv};
use crate::norm::{BN_EPS, normalising_statistics};
use crate::{NetworkKind, NetworkModule};

#[cfg(feature = "torch")]
mod import;
#[cfg(feature = "train")]
pub(crate) use import::{infer_config, is_ignored};

/// IC-GAN trains its generators with `SN_eps = 1e-6`.
pub const GENERATOR_SN_EPS: f64 = 1e-6;

/// A new convolution of the generator (stride 1, "same" padding, burn's default initialisation).
fn generator_conv<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    bias: bool,
    device: &B::Device,
) -> Conv2d<B> {
    init_conv([c_in, c_out], kernel, 1, bias, None, device)
}

/// The shape of a generator; read from a checkpoint's tensor shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    /// Length of the conditioning feature (2048 for SwAV ResNet-50).
    pub feature_dim: usize,
    /// Width of `shared_feat`'s embedding of the feature.
    pub shared_dim_feat: usize,
    /// Length of each of the `blocks + 1` z chunks.
    pub z_chunk: usize,
    pub bottom_width: usize,
    pub block_in: Vec<usize>,
    pub block_out: Vec<usize>,
    /// Whether a self-attention layer follows each block.
    pub attention: Vec<bool>,
    /// `(n_classes, shared_dim)` of the class embedding that instance-conditioned checkpoints carry unused.
    pub unused_class_embedding: Option<(usize, usize)>,
}

impl GeneratorConfig {
    /// IC-GAN's 128 x 128 ImageNet generator (`G_ch=96`, `dim_z=120`, `shared_dim_feat=512`, attention at 64).
    pub fn published_128() -> Self {
        Self::biggan(96, 128, 120, 512, &[64])
    }

    /// BigGAN's architecture table for a width multiplier and resolution (64, 128 or 256; anything else is a
    /// programming error). Checkpoints never come through here: their architecture is read off their shapes.
    pub fn biggan(
        ch: usize,
        resolution: usize,
        dim_z: usize,
        shared_dim_feat: usize,
        attention_at: &[usize],
    ) -> Self {
        let multipliers: &[usize] = match resolution {
            64 => &[16, 16, 8, 4, 2],
            128 => &[16, 16, 8, 4, 2, 1],
            256 => &[16, 16, 8, 8, 4, 2, 1],
            other => panic!("BigGAN's table has 64, 128 and 256 pixel generators, not {other}"),
        };
        let blocks = multipliers.len() - 1;
        Self {
            feature_dim: 2048,
            shared_dim_feat,
            z_chunk: dim_z / (blocks + 1),
            bottom_width: 4,
            block_in: multipliers[..blocks].iter().map(|m| m * ch).collect(),
            block_out: multipliers[1..].iter().map(|m| m * ch).collect(),
            attention: (0..blocks)
                .map(|i| attention_at.contains(&(8 << i)))
                .collect(),
            unused_class_embedding: Some((1000, 128)),
        }
    }

    pub fn blocks(&self) -> usize {
        self.block_in.len()
    }

    /// Length of z: one chunk for the first linear layer and one per block.
    pub fn dim_z(&self) -> usize {
        self.z_chunk * (self.blocks() + 1)
    }

    pub fn resolution(&self) -> usize {
        self.bottom_width << self.blocks()
    }

    /// Input width of the conditional batch norms' linear layers: `[y, z_chunk]`.
    pub(crate) fn cbn_input(&self) -> usize {
        self.shared_dim_feat + self.z_chunk
    }

    pub(crate) fn validate(&self) -> Result<(), CheckpointError> {
        let invalid = |message: String| {
            Err(CheckpointError::InvalidConfig {
                network: "generator",
                message,
            })
        };
        let n = self.block_in.len();
        if n == 0 || self.block_out.len() != n || self.attention.len() != n {
            return invalid(
                "block inputs, outputs and attention flags must be non-empty and of equal length"
                    .into(),
            );
        }
        if self.z_chunk == 0
            || self.bottom_width == 0
            || self.feature_dim == 0
            || self.shared_dim_feat == 0
        {
            return invalid("every size must be positive".into());
        }
        for i in 1..n {
            if self.block_in[i] != self.block_out[i - 1] {
                return invalid(format!(
                    "block {i} takes {} channels but block {} gives {}",
                    self.block_in[i],
                    i - 1,
                    self.block_out[i - 1]
                ));
            }
        }
        for (i, (&att, &c)) in self.attention.iter().zip(&self.block_out).enumerate() {
            if att && (c < 8 || c % 8 != 0) {
                return invalid(format!(
                    "attention after block {i} needs a multiple of 8 channels, has {c}"
                ));
            }
        }
        Ok(())
    }
}

/// Class-conditional batch norm (`layers.ccbn`): stored statistics at inference, batch statistics in training.
#[derive(Module, Debug)]
pub struct ConditionalBatchNorm<B: Backend> {
    pub gain: Linear<B>,
    pub bias: Linear<B>,
    pub stored_mean: RunningState<Tensor<B, 1>>,
    pub stored_var: RunningState<Tensor<B, 1>>,
    pub epsilon: f64,
}

impl<B: Backend> ConditionalBatchNorm<B> {
    pub(crate) fn init(channels: usize, cond: usize, device: &B::Device) -> Self {
        Self {
            gain: LinearConfig::new(cond, channels)
                .with_bias(false)
                .init(device),
            bias: LinearConfig::new(cond, channels)
                .with_bias(false)
                .init(device),
            stored_mean: RunningState::new(Tensor::zeros([channels], device)),
            stored_var: RunningState::new(Tensor::ones([channels], device)),
            epsilon: BN_EPS,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, y: Tensor<B, 2>) -> Tensor<B, 4> {
        let [n, c, _, _] = x.dims();
        // Training mode normalises with the batch's statistics and folds them into the stored ones with
        // PyTorch's momentum of 0.1.
        let (mean, var) = normalising_statistics(&x, &self.stored_mean, &self.stored_var, 0.1);
        let (scale, shift) = self.affine(mean, var, y);
        // Per-sample scale and shift `[N, C, 1, 1]`: two passes over x (see `norm`).
        x * scale.reshape([n, c, 1, 1]) + shift.reshape([n, c, 1, 1])
    }

    /// `((x - mean) / std) * (1 + gain(y)) + bias(y)` as `x * scale + shift`, with `scale` and `shift`
    /// `[N, C]`.
    fn affine(
        &self,
        mean: Tensor<B, 1>,
        var: Tensor<B, 1>,
        y: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let gain = self.gain.forward(y.clone()).add_scalar(1.0);
        let bias = self.bias.forward(y);
        let inv_std = var.add_scalar(self.epsilon).sqrt().recip();
        let scale = gain * inv_std.unsqueeze_dim::<2>(0);
        let shift = bias - scale.clone() * mean.unsqueeze_dim::<2>(0);
        (scale, shift)
    }
}

/// A conditional batch norm with the vector it is conditioned on, as the fused kernels take a normalisation.
pub struct Conditioned<'a, B: Backend> {
    pub norm: &'a ConditionalBatchNorm<B>,
    pub y: Tensor<B, 2>,
}

impl<B: Backend> ChannelNorm<B> for Conditioned<'_, B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.norm.forward(x, self.y.clone())
    }

    fn inference_affine(&self, _batch: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let stored = |s: &RunningState<Tensor<B, 1>>| s.value();
        self.norm.affine(
            stored(&self.norm.stored_mean),
            stored(&self.norm.stored_var),
            self.y.clone(),
        )
    }
}

/// BigGAN's residual up-block: BN-ReLU-up-conv-BN-ReLU-conv, plus an upsampled 1x1 shortcut.
#[derive(Module, Debug)]
pub struct GeneratorBlock<B: Backend> {
    pub bn1: ConditionalBatchNorm<B>,
    pub conv1: Conv2d<B>,
    pub bn2: ConditionalBatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub conv_sc: Conv2d<B>,
}

impl<B: Backend> GeneratorBlock<B> {
    /// The shortcut's 1 x 1 convolution runs before the upsampling rather than after (the same values, a
    /// quarter of the work): nearest upsampling commutes with a 1 x 1 convolution.
    pub fn forward(&self, x: Tensor<B, 4>, y: Tensor<B, 2>) -> Tensor<B, 4> {
        let bn1 = Conditioned {
            norm: &self.bn1,
            y: y.clone(),
        };
        let bn2 = Conditioned { norm: &self.bn2, y };
        let h = fused::norm_relu(x.clone(), &bn1, true);
        let h = fused::conv2d(&self.conv1, h, Epilogue::none().norm(&bn2).relu());
        let shortcut = fused::conv2d(&self.conv_sc, x, Epilogue::none());
        fused::conv2d(
            &self.conv2,
            h,
            Epilogue::none().upsampled_residual(shortcut),
        )
    }
}

/// SAGAN self-attention (`layers.Attention`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub theta: Conv2d<B>,
    pub phi: Conv2d<B>,
    pub g: Conv2d<B>,
    pub o: Conv2d<B>,
    pub gamma: Param<Tensor<B, 1>>,
}

impl<B: Backend> Attention<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let pool = |t: Tensor<B, 4>| fused::max_pool2d(t, 2, 2, 0);
        let conv = |layer: &Conv2d<B>, t: Tensor<B, 4>| fused::conv2d(layer, t, Epilogue::none());
        let theta = conv(&self.theta, x.clone()).reshape([n, c / 8, h * w]);
        let phi = pool(conv(&self.phi, x.clone())).reshape([n, c / 8, h * w / 4]);
        let g = pool(conv(&self.g, x.clone())).reshape([n, c / 2, h * w / 4]);
        let beta = softmax(theta.swap_dims(1, 2).matmul(phi), 2);
        let attended = g.matmul(beta.swap_dims(1, 2)).reshape([n, c / 2, h, w]);
        let o = conv(&self.o, attended);
        o * self.gamma.val().reshape([1, 1, 1, 1]) + x
    }
}

#[derive(Module, Debug)]
pub struct GeneratorStage<B: Backend> {
    pub block: GeneratorBlock<B>,
    pub attention: Option<Attention<B>>,
}

#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    pub shared_feat: Linear<B>,
    pub linear: Linear<B>,
    pub stages: Vec<GeneratorStage<B>>,
    pub output_bn: BatchNorm<B>,
    pub output_conv: Conv2d<B>,
    #[module(skip)]
    pub config: GeneratorConfig,
}

impl<B: Backend> Generator<B> {
    /// `z` `[N, dim_z]` and features `[N, 2048]` (any norm: they are L2-normalised here) to images
    /// `[N, 3, H, W]` in [-1, 1].
    pub fn forward(&self, z: Tensor<B, 2>, features: Tensor<B, 2>) -> Tensor<B, 4> {
        let [n, _] = z.dims();
        let chunk = self.config.z_chunk;
        let y = self.shared_feat.forward(layers::l2_normalise(features));
        let z_part = |i: usize| z.clone().slice([0..n, i * chunk..(i + 1) * chunk]);
        let bw = self.config.bottom_width;
        let mut h = self
            .linear
            .forward(z_part(0))
            .reshape([n, self.config.block_in[0], bw, bw]);
        for (i, stage) in self.stages.iter().enumerate() {
            let yi = Tensor::cat(vec![y.clone(), z_part(i + 1)], 1);
            h = stage.block.forward(h, yi);
            if let Some(attention) = &stage.attention {
                h = attention.forward(h);
            }
        }
        let h = fused::norm_relu(h, &self.output_bn, false);
        fused::conv2d(&self.output_conv, h, Epilogue::none().tanh())
    }
}

impl<B: Backend> NetworkModule<B> for Generator<B> {
    type Config = GeneratorConfig;
    const KIND: NetworkKind = NetworkKind::Generator;

    fn config(&self) -> GeneratorConfig {
        self.config.clone()
    }

    fn init(config: &GeneratorConfig, device: &B::Device) -> Result<Self, CheckpointError> {
        config.validate()?;
        let cond = config.cbn_input();
        let bw2 = config.bottom_width * config.bottom_width;
        let stages = (0..config.blocks())
            .map(|i| {
                let (c_in, c_out) = (config.block_in[i], config.block_out[i]);
                GeneratorStage {
                    block: GeneratorBlock {
                        bn1: ConditionalBatchNorm::init(c_in, cond, device),
                        conv1: generator_conv(c_in, c_out, 3, true, device),
                        bn2: ConditionalBatchNorm::init(c_out, cond, device),
                        conv2: generator_conv(c_out, c_out, 3, true, device),
                        conv_sc: generator_conv(c_in, c_out, 1, true, device),
                    },
                    attention: config.attention[i].then(|| Attention {
                        theta: generator_conv(c_out, c_out / 8, 1, false, device),
                        phi: generator_conv(c_out, c_out / 8, 1, false, device),
                        g: generator_conv(c_out, c_out / 2, 1, false, device),
                        o: generator_conv(c_out / 2, c_out, 1, false, device),
                        gamma: Param::from_tensor(Tensor::zeros([1], device)),
                    }),
                }
            })
            .collect();
        let last = *config.block_out.last().expect("validated non-empty");
        Ok(Self {
            shared_feat: LinearConfig::new(config.feature_dim, config.shared_dim_feat).init(device),
            linear: LinearConfig::new(config.z_chunk, config.block_in[0] * bw2).init(device),
            stages,
            output_bn: BatchNormConfig::new(last).with_epsilon(BN_EPS).init(device),
            output_conv: generator_conv(last, 3, 3, true, device),
            config: config.clone(),
        })
    }
}

/// The smallest truncation the sampler takes. Values are redrawn until they fall inside [-t, t], about
/// 1 / (0.8 t) draws each for small t: below this a request could keep the generator busy indefinitely.
pub const MIN_TRUNCATION: f32 = 0.02;

/// A truncation the noise sampler cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("truncation must be a number of at least {MIN_TRUNCATION}, got {0}")]
pub struct InvalidTruncation(pub f32);

/// Whether `truncation` is one the sampler accepts (none, or a finite number of at least [`MIN_TRUNCATION`]).
pub fn check_truncation(truncation: Option<f32>) -> Result<(), InvalidTruncation> {
    match truncation {
        Some(t) if !(t.is_finite() && t >= MIN_TRUNCATION) => Err(InvalidTruncation(t)),
        _ => Ok(()),
    }
}

/// Draws generator noise: standard normal, or BigGAN's truncation trick (values outside [-t, t] redrawn).
pub fn sample_noise(
    seed: u64,
    count: usize,
    dim_z: usize,
    truncation: Option<f32>,
) -> Result<Vec<f32>, InvalidTruncation> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    check_truncation(truncation)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok((0..count * dim_z)
        .map(|_| {
            loop {
                let v: f32 = StandardNormal.sample(&mut rng);
                match truncation {
                    Some(t) if v.abs() > t => continue,
                    _ => break v,
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_noise_stays_inside_and_tiny_truncations_are_refused() {
        let z = sample_noise(3, 4, 120, Some(MIN_TRUNCATION)).unwrap();
        assert_eq!(z.len(), 480);
        assert!(z.iter().all(|v| v.abs() <= MIN_TRUNCATION));
        assert_eq!(
            sample_noise(3, 4, 120, None).unwrap(),
            sample_noise(3, 4, 120, None).unwrap()
        );
        for bad in [1e-30, 0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(sample_noise(3, 1, 120, Some(bad)).is_err(), "{bad}");
        }
    }

    /// In training, conditional batch norm is `(x - mean) / sqrt(var + eps) * (1 + gain(y)) + bias(y)` with the
    /// batch's biased statistics, and folds them into the stored ones with momentum 0.1: checked against that
    /// formula written out directly, gradients included.
    #[test]
    fn conditional_batch_norm_trains_on_the_batch_statistics() {
        use burn::backend::{Autodiff, Flex};
        use burn::tensor::{Distribution, Tolerance};
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        let bn = ConditionalBatchNorm::<Ad>::init(4, 3, &device);
        let x = Tensor::<Ad, 4>::random([3, 4, 5, 6], Distribution::Normal(1.0, 2.0), &device)
            .require_grad();
        let y = Tensor::<Ad, 2>::random([3, 3], Distribution::Default, &device);
        let weights = Tensor::<Ad, 4>::random([3, 4, 5, 6], Distribution::Default, &device);

        let out = bn.forward(x.clone(), y.clone());
        let grad = x
            .grad(&(out.clone() * weights.clone()).sum().backward())
            .unwrap();

        let x2 = x.clone().detach().require_grad();
        let flat = x2.clone().swap_dims(0, 1).reshape([4, 3 * 5 * 6]);
        let mean = flat.clone().mean_dim(1);
        let var = (flat - mean.clone()).square().mean_dim(1);
        let gain = bn
            .gain
            .forward(y.clone())
            .add_scalar(1.0)
            .reshape([3, 4, 1, 1]);
        let bias = bn.bias.forward(y).reshape([3, 4, 1, 1]);
        let expected = (x2.clone() - mean.clone().reshape([1, 4, 1, 1]))
            / var.clone().add_scalar(BN_EPS).sqrt().reshape([1, 4, 1, 1])
            * gain
            + bias;
        let expected_grad = x2
            .grad(&(expected.clone() * weights).sum().backward())
            .unwrap();

        let tolerance = Tolerance::<f32>::absolute(1e-5);
        out.into_data()
            .assert_approx_eq(&expected.into_data(), tolerance);
        grad.into_data()
            .assert_approx_eq(&expected_grad.into_data(), tolerance);
        // Stored statistics started at 0 and 1; the variance folded in is the unbiased one (90 values per
        // channel), as PyTorch folds it.
        bn.stored_mean
            .value_sync()
            .into_data()
            .assert_approx_eq(&(mean.reshape([4]) * 0.1).into_data(), tolerance);
        let unbiased = var.reshape([4]).mul_scalar(90.0 / 89.0);
        bn.stored_var
            .value_sync()
            .into_data()
            .assert_approx_eq(&(unbiased * 0.1 + 0.9).into_data(), tolerance);
    }
}
