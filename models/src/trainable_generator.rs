//! The generator as IC-GAN trains it: every convolution and linear layer (the feature embedding, the first
//! linear layer, the conditional batch norms' gain and bias, the output convolution) holds a raw weight with
//! spectral norm (`G_param="SN"`, `SN_eps=1e-6`); the output batch norm does not, as in BigGAN's `G.output_layer`.
//!
//! [`TrainableGenerator::generator`] builds the inference [`Generator`] from the normalised weights. Under
//! autodiff that is one training forward pass (the normalised weights stay in the graph, each layer's `u`
//! advances one power-iteration step); on a plain backend it folds spectral norm in exactly as loading one of
//! IC-GAN's checkpoints does, which is how a trained generator is exported. Batch statistics are shared with the
//! built generator, so a training pass folds them into this module's stored ones.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::prelude::*;

use crate::NetworkKind;
use crate::checkpoint::{CheckpointError, TorchNamed, TorchNames, TorchStateDict};
use crate::generator::{
    Attention, ConditionalBatchNorm, GENERATOR_SN_EPS, Generator, GeneratorBlock, GeneratorConfig,
    GeneratorStage, infer_config, is_ignored,
};
use crate::layers::conv_from_params;
use crate::norm::BN_EPS;
use crate::spectral_norm::{SpectralNormWeight, computed_param, default_bias};

/// A parameter's own tensor, for a module built for one forward pass. Cloning the `Param` would not do: a clone
/// of a lazily initialised parameter initialises a tensor of its own, which the gradient would reach instead.
fn same_param<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
    computed_param(param.val())
}

/// A spectrally normalised layer: a linear layer (`D = 2`, weight `[out, in]` as PyTorch stores it) or a
/// convolution with stride 1 and "same" padding (`D = 4`, `[out, in, k, k]`).
#[derive(Module, Debug)]
pub struct SnLayer<B: Backend, const D: usize> {
    pub weight: SpectralNormWeight<B, D>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend, const D: usize> SnLayer<B, D> {
    fn init(shape: [usize; D], bias: bool, device: &B::Device) -> Self {
        Self {
            weight: SpectralNormWeight::init(shape, GENERATOR_SN_EPS, device),
            bias: bias.then(|| default_bias(&shape, device)),
        }
    }
}

impl<B: Backend> SnLayer<B, 2> {
    fn linear(&self) -> Linear<B> {
        Linear {
            weight: computed_param(self.weight.value().transpose()),
            bias: self.bias.as_ref().map(same_param),
        }
    }
}

impl<B: Backend> SnLayer<B, 4> {
    fn conv(&self) -> Conv2d<B> {
        let weight = self.weight.value();
        let padding = weight.dims()[2] / 2;
        conv_from_params(
            computed_param(weight),
            self.bias.as_ref().map(same_param),
            1,
            padding,
        )
    }
}

pub type SnLinear<B> = SnLayer<B, 2>;
pub type SnConv2d<B> = SnLayer<B, 4>;

fn conv<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    bias: bool,
    device: &B::Device,
) -> SnConv2d<B> {
    SnLayer::init([c_out, c_in, kernel, kernel], bias, device)
}

/// IC-GAN's conditional batch norm with spectrally normalised gain and bias layers (no biases of their own).
#[derive(Module, Debug)]
pub struct SnConditionalBatchNorm<B: Backend> {
    pub gain: SnLinear<B>,
    pub bias: SnLinear<B>,
    pub stored_mean: RunningState<Tensor<B, 1>>,
    pub stored_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> SnConditionalBatchNorm<B> {
    fn init(channels: usize, cond: usize, device: &B::Device) -> Self {
        Self {
            gain: SnLayer::init([channels, cond], false, device),
            bias: SnLayer::init([channels, cond], false, device),
            stored_mean: RunningState::new(Tensor::zeros([channels], device)),
            stored_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    fn conditional_batch_norm(&self) -> ConditionalBatchNorm<B> {
        ConditionalBatchNorm {
            gain: self.gain.linear(),
            bias: self.bias.linear(),
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
        config.validate()?;
        let cond = config.cbn_input();
        let bw2 = config.bottom_width * config.bottom_width;
        let stages = (0..config.blocks())
            .map(|i| {
                let (c_in, c_out) = (config.block_in[i], config.block_out[i]);
                TrainableStage {
                    bn1: SnConditionalBatchNorm::init(c_in, cond, device),
                    conv1: conv(c_in, c_out, 3, true, device),
                    bn2: SnConditionalBatchNorm::init(c_out, cond, device),
                    conv2: conv(c_out, c_out, 3, true, device),
                    conv_sc: conv(c_in, c_out, 1, true, device),
                    attention: config.attention[i].then(|| SnAttention {
                        theta: conv(c_out, c_out / 8, 1, false, device),
                        phi: conv(c_out, c_out / 8, 1, false, device),
                        g: conv(c_out, c_out / 2, 1, false, device),
                        o: conv(c_out / 2, c_out, 1, false, device),
                        gamma: Param::from_tensor(Tensor::zeros([1], device)),
                    }),
                }
            })
            .collect();
        let last = *config.block_out.last().expect("validated non-empty");
        Ok(Self {
            shared_feat: SnLayer::init([config.shared_dim_feat, config.feature_dim], true, device),
            linear: SnLayer::init([config.block_in[0] * bw2, config.z_chunk], true, device),
            stages,
            output_bn: BatchNormConfig::new(last).with_epsilon(BN_EPS).init(device),
            output_conv: conv(last, 3, 3, true, device),
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
                    bn1: stage.bn1.conditional_batch_norm(),
                    conv1: stage.conv1.conv(),
                    bn2: stage.bn2.conditional_batch_norm(),
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

    /// A generator to train from a state dict of IC-GAN's `BigGAN.Generator` (raw weights, `u0` and stored
    /// statistics, as its `G` and `G_ema` checkpoints hold them), its architecture read off the shapes. A
    /// missing tensor, one of another shape or one left over is an error that names it.
    pub fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        let sd = sd.for_network(NetworkKind::Generator.name(), "");
        let mut config = infer_config(&sd)?;
        // Instance conditioning never reads the class embedding; a trained generator carries none.
        config.unused_class_embedding = None;
        Self::init(&config, device)?.read_torch(sd, is_ignored, device)
    }

    /// `G(z, f)`: one training forward pass under autodiff.
    pub fn forward(&self, z: Tensor<B, 2>, features: Tensor<B, 2>) -> Tensor<B, 4> {
        self.generator().forward(z, features)
    }
}

impl<B: Backend> TorchNamed<B> for TrainableGenerator<B> {
    /// IC-GAN's names: its `G_ema` checkpoints hold exactly these tensors, so that [`Generator::from_torch`]
    /// (or IC-GAN's own code) reads the state dict.
    fn visit_torch_names<N: TorchNames<B>>(
        &mut self,
        names: &mut N,
    ) -> Result<(), CheckpointError> {
        visit_layer(names, "shared_feat", &mut self.shared_feat)?;
        visit_layer(names, "linear", &mut self.linear)?;
        for (i, stage) in self.stages.iter_mut().enumerate() {
            let p = format!("blocks.{i}.0");
            for (name, bn) in [("bn1", &mut stage.bn1), ("bn2", &mut stage.bn2)] {
                visit_layer(names, &format!("{p}.{name}.gain"), &mut bn.gain)?;
                visit_layer(names, &format!("{p}.{name}.bias"), &mut bn.bias)?;
                names.state(&format!("{p}.{name}.stored_mean"), &mut bn.stored_mean)?;
                names.state(&format!("{p}.{name}.stored_var"), &mut bn.stored_var)?;
            }
            visit_layer(names, &format!("{p}.conv1"), &mut stage.conv1)?;
            visit_layer(names, &format!("{p}.conv2"), &mut stage.conv2)?;
            visit_layer(names, &format!("{p}.conv_sc"), &mut stage.conv_sc)?;
            if let Some(a) = &mut stage.attention {
                let p = format!("blocks.{i}.1");
                for (name, conv) in [
                    ("theta", &mut a.theta),
                    ("phi", &mut a.phi),
                    ("g", &mut a.g),
                    ("o", &mut a.o),
                ] {
                    visit_layer(names, &format!("{p}.{name}"), conv)?;
                }
                names.param(&format!("{p}.gamma"), &mut a.gamma)?;
            }
        }
        let bn = &mut self.output_bn;
        names.param("output_layer.0.gain", &mut bn.gamma)?;
        names.param("output_layer.0.bias", &mut bn.beta)?;
        names.state("output_layer.0.stored_mean", &mut bn.running_mean)?;
        names.state("output_layer.0.stored_var", &mut bn.running_var)?;
        visit_layer(names, "output_layer.2", &mut self.output_conv)
    }
}

/// A layer's spectrally normalised weight and, where it has one, `{prefix}.bias`.
fn visit_layer<B: Backend, const D: usize>(
    names: &mut impl TorchNames<B>,
    prefix: &str,
    layer: &mut SnLayer<B, D>,
) -> Result<(), CheckpointError> {
    names.sn_weight(prefix, &mut layer.weight)?;
    if let Some(bias) = &mut layer.bias {
        names.param(&format!("{prefix}.bias"), bias)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    use crate::checkpoint::FromTorch;
    use crate::spectral_norm::tests::largest_singular_value;

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
            flat2(&g.stages[1].bn2.gain.weight),
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
        let mut g = TrainableGenerator::<A>::init(&config(), &device).unwrap();
        // Orthogonal initialisation gives unit norm already; scaled, the check below says something.
        let conv1 = &mut g.stages[0].conv1.weight.weight;
        *conv1 = Param::from_tensor(Tensor::from_inner(conv1.val().inner().mul_scalar(3.0)));
        let raw = g.stages[0].conv1.weight.weight.val().inner().flatten(1, 3);
        let raw_sigma = largest_singular_value(raw);
        assert!((raw_sigma - 1.0).abs() > 0.05, "raw sigma {raw_sigma}");
        // Converge every u with training passes, then export on the plain backend.
        for _ in 0..300 {
            let _ = g.generator();
        }
        let exported = g.valid().generator();
        let sigma =
            largest_singular_value(exported.stages[0].block.conv1.weight.val().flatten(1, 3));
        assert!((sigma - 1.0).abs() < 1e-2, "sigma {sigma}");
        // Exporting twice gives the same generator: eval mode leaves u alone.
        let again = g.valid().generator();
        assert_eq!(
            exported.output_conv.weight.val().into_data(),
            again.output_conv.weight.val().into_data()
        );
    }
}
