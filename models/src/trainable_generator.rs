//! The generator as IC-GAN trains it: every convolution and linear layer (the feature embedding, the first
//! linear layer, the conditional batch norms' gain and bias, the output convolution) holds a raw weight with
//! spectral norm (`G_param="SN"`, `SN_eps=1e-6`); the output batch norm does not, as in BigGAN's `G.output_layer`.
//!
//! [`TrainableGenerator::generator`] builds the inference [`Generator`] from the normalised weights. Under
//! autodiff that is one training forward pass (the normalised weights stay in the graph, each layer's `u`
//! advances one power-iteration step); on a plain backend it folds spectral norm in exactly as loading one of
//! IC-GAN's checkpoints does, which is how a trained generator is exported. Batch statistics are shared with the
//! built generator, so a training pass folds them into this module's stored ones.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;

use crate::NetworkModule;
use std::collections::HashMap;

use crate::checkpoint::{CheckpointError, TensorSnapshot};
use crate::generator::{
    Attention, BN_EPS, ConditionalBatchNorm, GENERATOR_SN_EPS, Generator, GeneratorBlock,
    GeneratorConfig, GeneratorStage,
};
use crate::spectral_norm::{SpectralNormWeight, computed_param};

/// A parameter's own tensor, for a module built for one forward pass. Cloning the `Param` would not do: a clone
/// of a lazily initialised parameter initialises a tensor of its own, which the gradient would reach instead.
fn same_param<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
    computed_param(param.val())
}

/// A spectrally normalised linear layer; the weight in PyTorch's `[out, in]` layout.
#[derive(Module, Debug)]
pub struct SnLinear<B: Backend> {
    pub weight: SpectralNormWeight<B, 2>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> SnLinear<B> {
    fn init(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: SpectralNormWeight::init([d_out, d_in], d_in, GENERATOR_SN_EPS, device),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
        }
    }

    fn linear(&self) -> Linear<B> {
        Linear {
            weight: computed_param(self.weight.value().transpose()),
            bias: self.bias.as_ref().map(same_param),
        }
    }
}

/// A spectrally normalised convolution with stride 1 and "same" padding.
#[derive(Module, Debug)]
pub struct SnConv2d<B: Backend> {
    pub weight: SpectralNormWeight<B, 4>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> SnConv2d<B> {
    fn init(c_in: usize, c_out: usize, kernel: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: SpectralNormWeight::init(
                [c_out, c_in, kernel, kernel],
                c_in * kernel * kernel,
                GENERATOR_SN_EPS,
                device,
            ),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([c_out], device))),
        }
    }

    fn conv(&self) -> Conv2d<B> {
        let weight = self.weight.value();
        let [_, _, kh, kw] = weight.dims();
        let p = kh / 2;
        Conv2d {
            weight: computed_param(weight),
            bias: self.bias.as_ref().map(same_param),
            stride: [1, 1],
            kernel_size: [kh, kw],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
        }
    }
}

/// IC-GAN's conditional batch norm with spectrally normalised gain and bias layers (no biases of their own).
#[derive(Module, Debug)]
pub struct SnConditionalBatchNorm<B: Backend> {
    pub gain: SpectralNormWeight<B, 2>,
    pub bias: SpectralNormWeight<B, 2>,
    pub stored_mean: burn::module::RunningState<Tensor<B, 1>>,
    pub stored_var: burn::module::RunningState<Tensor<B, 1>>,
}

impl<B: Backend> SnConditionalBatchNorm<B> {
    fn init(channels: usize, cond: usize, device: &B::Device) -> Self {
        let layer = || SpectralNormWeight::init([channels, cond], cond, GENERATOR_SN_EPS, device);
        Self {
            gain: layer(),
            bias: layer(),
            stored_mean: burn::module::RunningState::new(Tensor::zeros([channels], device)),
            stored_var: burn::module::RunningState::new(Tensor::ones([channels], device)),
        }
    }

    fn batch_norm(&self) -> ConditionalBatchNorm<B> {
        let linear = |w: &SpectralNormWeight<B, 2>| Linear {
            weight: computed_param(w.value().transpose()),
            bias: None,
        };
        ConditionalBatchNorm {
            gain: linear(&self.gain),
            bias: linear(&self.bias),
            // Clones share the state, so the built layer's batch statistics land here.
            stored_mean: self.stored_mean.clone(),
            stored_var: self.stored_var.clone(),
            epsilon: BN_EPS,
        }
    }
}

#[derive(Module, Debug)]
pub struct SnAttention<B: Backend> {
    pub theta: SnConv2d<B>,
    pub phi: SnConv2d<B>,
    pub g: SnConv2d<B>,
    pub o: SnConv2d<B>,
    pub gamma: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
pub struct TrainableStage<B: Backend> {
    pub bn1: SnConditionalBatchNorm<B>,
    pub conv1: SnConv2d<B>,
    pub bn2: SnConditionalBatchNorm<B>,
    pub conv2: SnConv2d<B>,
    pub conv_sc: SnConv2d<B>,
    pub attention: Option<SnAttention<B>>,
}

#[derive(Module, Debug)]
pub struct TrainableGenerator<B: Backend> {
    pub shared_feat: SnLinear<B>,
    pub linear: SnLinear<B>,
    pub stages: Vec<TrainableStage<B>>,
    pub output_bn: BatchNorm<B>,
    pub output_conv: SnConv2d<B>,
    #[module(skip)]
    pub config: GeneratorConfig,
}

impl<B: Backend> TrainableGenerator<B> {
    /// A new generator of this configuration, every layer at PyTorch's default initialisation.
    pub fn init(config: &GeneratorConfig, device: &B::Device) -> Result<Self, CheckpointError> {
        // The inference generator validates the configuration and defines the shapes.
        Generator::<B>::init(config, device)?;
        let cond = config.cbn_input();
        let bw2 = config.bottom_width * config.bottom_width;
        let stages = (0..config.blocks())
            .map(|i| {
                let (c_in, c_out) = (config.block_in[i], config.block_out[i]);
                TrainableStage {
                    bn1: SnConditionalBatchNorm::init(c_in, cond, device),
                    conv1: SnConv2d::init(c_in, c_out, 3, true, device),
                    bn2: SnConditionalBatchNorm::init(c_out, cond, device),
                    conv2: SnConv2d::init(c_out, c_out, 3, true, device),
                    conv_sc: SnConv2d::init(c_in, c_out, 1, true, device),
                    attention: config.attention[i].then(|| SnAttention {
                        theta: SnConv2d::init(c_out, c_out / 8, 1, false, device),
                        phi: SnConv2d::init(c_out, c_out / 8, 1, false, device),
                        g: SnConv2d::init(c_out, c_out / 2, 1, false, device),
                        o: SnConv2d::init(c_out / 2, c_out, 1, false, device),
                        gamma: Param::from_tensor(Tensor::zeros([1], device)),
                    }),
                }
            })
            .collect();
        let last = *config.block_out.last().expect("validated non-empty");
        Ok(Self {
            shared_feat: SnLinear::init(config.feature_dim, config.shared_dim_feat, true, device),
            linear: SnLinear::init(config.z_chunk, config.block_in[0] * bw2, true, device),
            stages,
            output_bn: BatchNormConfig::new(last).with_epsilon(BN_EPS).init(device),
            output_conv: SnConv2d::init(last, 3, 3, true, device),
            config: config.clone(),
        })
    }

    /// The inference generator with every weight divided by its largest singular value (see the module's
    /// documentation for what that does under autodiff and without it).
    pub fn generator(&self) -> Generator<B> {
        let stages = self
            .stages
            .iter()
            .map(|stage| GeneratorStage {
                block: GeneratorBlock {
                    bn1: stage.bn1.batch_norm(),
                    conv1: stage.conv1.conv(),
                    bn2: stage.bn2.batch_norm(),
                    conv2: stage.conv2.conv(),
                    conv_sc: stage.conv_sc.conv(),
                },
                attention: stage.attention.as_ref().map(|a| Attention {
                    theta: a.theta.conv(),
                    phi: a.phi.conv(),
                    g: a.g.conv(),
                    o: a.o.conv(),
                    gamma: same_param(&a.gamma),
                }),
            })
            .collect();
        Generator {
            shared_feat: self.shared_feat.linear(),
            linear: self.linear.linear(),
            stages,
            output_bn: BatchNorm {
                gamma: same_param(&self.output_bn.gamma),
                beta: same_param(&self.output_bn.beta),
                running_mean: self.output_bn.running_mean.clone(),
                running_var: self.output_bn.running_var.clone(),
                momentum: self.output_bn.momentum,
                epsilon: self.output_bn.epsilon,
            },
            output_conv: self.output_conv.conv(),
            config: self.config.clone(),
        }
    }

    /// The raw weights, `u` vectors and stored statistics under the names of IC-GAN's state dict (`G_ema`
    /// checkpoints hold exactly these), so that [`Generator::from_torch`] (or IC-GAN's own code) reads them.
    pub fn torch_state_dict(&self) -> HashMap<String, TensorSnapshot> {
        let mut sd = TorchNames::default();
        sd.linear("shared_feat", &self.shared_feat);
        sd.linear("linear", &self.linear);
        for (i, stage) in self.stages.iter().enumerate() {
            let p = format!("blocks.{i}.0");
            for (name, bn) in [("bn1", &stage.bn1), ("bn2", &stage.bn2)] {
                sd.sn(&format!("{p}.{name}.gain"), &bn.gain);
                sd.sn(&format!("{p}.{name}.bias"), &bn.bias);
                sd.tensor(
                    &format!("{p}.{name}.stored_mean"),
                    bn.stored_mean.value_sync(),
                );
                sd.tensor(
                    &format!("{p}.{name}.stored_var"),
                    bn.stored_var.value_sync(),
                );
            }
            sd.conv(&format!("{p}.conv1"), &stage.conv1);
            sd.conv(&format!("{p}.conv2"), &stage.conv2);
            sd.conv(&format!("{p}.conv_sc"), &stage.conv_sc);
            if let Some(a) = &stage.attention {
                let p = format!("blocks.{i}.1");
                for (name, conv) in [
                    ("theta", &a.theta),
                    ("phi", &a.phi),
                    ("g", &a.g),
                    ("o", &a.o),
                ] {
                    sd.conv(&format!("{p}.{name}"), conv);
                }
                sd.tensor(&format!("{p}.gamma"), a.gamma.val());
            }
        }
        let bn = &self.output_bn;
        sd.tensor("output_layer.0.gain", bn.gamma.val());
        sd.tensor("output_layer.0.bias", bn.beta.val());
        sd.tensor("output_layer.0.stored_mean", bn.running_mean.value_sync());
        sd.tensor("output_layer.0.stored_var", bn.running_var.value_sync());
        sd.conv("output_layer.2", &self.output_conv);
        sd.0
    }

    /// `G(z, f)`: one training forward pass under autodiff.
    pub fn forward(&self, z: Tensor<B, 2>, features: Tensor<B, 2>) -> Tensor<B, 4> {
        self.generator().forward(z, features)
    }
}

/// A state dict being written under PyTorch's names.
#[derive(Default)]
struct TorchNames(HashMap<String, TensorSnapshot>);

impl TorchNames {
    fn tensor<B: Backend, const D: usize>(&mut self, name: &str, tensor: Tensor<B, D>) {
        let snapshot =
            TensorSnapshot::from_data(tensor.into_data(), vec![], vec![], Default::default());
        self.0.insert(name.to_string(), snapshot);
    }

    fn sn<B: Backend, const D: usize>(&mut self, prefix: &str, weight: &SpectralNormWeight<B, D>) {
        self.tensor(&format!("{prefix}.weight"), weight.weight.val());
        let u = weight.u.value_sync();
        let rows = u.dims()[0];
        self.tensor(&format!("{prefix}.u0"), u.reshape([1, rows]));
    }

    fn bias<B: Backend>(&mut self, prefix: &str, bias: &Option<Param<Tensor<B, 1>>>) {
        if let Some(bias) = bias {
            self.tensor(&format!("{prefix}.bias"), bias.val());
        }
    }

    fn linear<B: Backend>(&mut self, prefix: &str, layer: &SnLinear<B>) {
        self.sn(prefix, &layer.weight);
        self.bias(prefix, &layer.bias);
    }

    fn conv<B: Backend>(&mut self, prefix: &str, layer: &SnConv2d<B>) {
        self.sn(prefix, &layer.weight);
        self.bias(prefix, &layer.bias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    fn config() -> GeneratorConfig {
        let mut config = GeneratorConfig::biggan(2, 64, 20, 8, &[16]);
        config.feature_dim = 6;
        // A trained generator has no class embedding (IC-GAN's checkpoints carry an unused one).
        config.unused_class_embedding = None;
        config
    }

    #[test]
    fn training_updates_the_raw_weights_u_and_the_stored_statistics() {
        let device = Default::default();
        let g = TrainableGenerator::<A>::init(&config(), &device).unwrap();
        let u_before = g.stages[0].conv1.weight.u.value_sync().into_data();
        let mean_before = g.stages[0].bn1.stored_mean.value_sync().into_data();
        let z = Tensor::<A, 2>::random([3, 20], Distribution::Normal(0.0, 1.0), &device);
        let f = Tensor::<A, 2>::random([3, 6], Distribution::Normal(0.0, 1.0), &device);
        let images = g.forward(z, f);
        assert_eq!(images.dims(), [3, 3, 64, 64]);
        let grads = images.sum().backward();
        let total = |grad: Option<Tensor<Flex, 1>>, what: &str| {
            let grad = grad.unwrap_or_else(|| panic!("{what} has no gradient"));
            assert!(
                grad.abs().sum().into_scalar() > 0.0,
                "{what}'s gradient is zero"
            );
        };
        let flat2 =
            |w: &SpectralNormWeight<A, 2>| w.weight.val().grad(&grads).map(|g| g.flatten(0, 1));
        let flat4 =
            |w: &SpectralNormWeight<A, 4>| w.weight.val().grad(&grads).map(|g| g.flatten(0, 3));
        total(flat2(&g.shared_feat.weight), "shared_feat");
        total(
            flat2(&g.stages[1].bn2.gain),
            "a conditional batch norm's gain",
        );
        total(flat4(&g.stages[0].conv1.weight), "conv1");
        let attention = g.stages[1]
            .attention
            .as_ref()
            .expect("attention at 16 pixels");
        // Attention starts switched off (gamma 0), so only its gate learns at first.
        total(attention.gamma.val().grad(&grads), "attention's gamma");
        total(flat4(&g.output_conv.weight), "the output convolution");
        assert!(g.output_bn.gamma.val().grad(&grads).is_some());
        assert_ne!(
            u_before,
            g.stages[0].conv1.weight.u.value_sync().into_data()
        );
        assert_ne!(
            mean_before,
            g.stages[0].bn1.stored_mean.value_sync().into_data()
        );
    }

    /// The export is what loading the same weights as one of IC-GAN's checkpoints gives.
    #[test]
    fn the_export_equals_loading_its_torch_state_dict() {
        let device = Default::default();
        let g = TrainableGenerator::<A>::init(&config(), &device).unwrap();
        let z = Tensor::<A, 2>::random([4, 20], Distribution::Normal(0.0, 1.0), &device);
        let f = Tensor::<A, 2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        // A few training passes, so that u and the stored statistics are not at their start; attention switched on.
        for _ in 0..3 {
            let _ = g.forward(z.clone(), f.clone());
        }
        let mut g = g.valid();
        g.stages[1].attention.as_mut().unwrap().gamma =
            Param::from_tensor(Tensor::from_floats([0.7], &device));
        let loaded = Generator::<Flex>::from_torch(
            crate::checkpoint::TorchStateDict::from_tensors(g.torch_state_dict()),
            &device,
        )
        .unwrap();
        assert_eq!(loaded.config, g.config);
        let (z, f) = (z.inner(), f.inner());
        let exported = g.generator().forward(z.clone(), f.clone());
        let loaded = loaded.forward(z, f);
        // Loading folds spectral norm in f64, the export in f32.
        exported
            .into_data()
            .assert_approx_eq::<f32>(&loaded.into_data(), burn::tensor::Tolerance::absolute(1e-4));
    }

    #[test]
    fn the_exported_generator_has_unit_spectral_norm_layers() {
        let device = Default::default();
        let g = TrainableGenerator::<A>::init(&config(), &device).unwrap();
        // Converge every u with training passes, then export on the plain backend. (Kaiming-initialised, this
        // layer's largest singular value is about 0.7.)
        for _ in 0..300 {
            let _ = g.generator();
        }
        let exported = g.valid().generator();
        let w = exported.stages[0].block.conv1.weight.val();
        let [o, i, kh, kw] = w.dims();
        let m = w.reshape([o, i * kh * kw]);
        let gram = m.clone().matmul(m.transpose());
        let mut x = Tensor::<Flex, 2>::ones([o, 1], &device);
        for _ in 0..300 {
            let y = gram.clone().matmul(x.clone());
            let norm = y.clone().square().sum().sqrt();
            x = y / norm.reshape([1, 1]);
        }
        let sigma: f32 = x.clone().transpose().matmul(gram.matmul(x)).into_scalar();
        assert!((sigma.sqrt() - 1.0).abs() < 1e-2, "sigma {}", sigma.sqrt());
        // Exporting twice gives the same generator: eval mode leaves u alone.
        let again = g.valid().generator();
        assert_eq!(
            exported.output_conv.weight.val().into_data(),
            again.output_conv.weight.val().into_data()
        );
    }
}
