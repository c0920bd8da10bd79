//! Spectral normalisation as BigGAN trains with it (`layers.SN`): a raw weight, divided by its largest
//! singular value, estimated by one power-iteration step per training forward pass from a persistent vector
//! `u` (Miyato et al. 2018). IC-GAN's discriminator and generator both train this way; a trained generator is
//! exported by folding the division in once, as [`crate::checkpoint::torch_layers::read_spectral_normalised`] does for
//! IC-GAN's own checkpoints.

use burn::module::{Param, RunningState};
use burn::nn::Initializer;
use burn::prelude::*;

use crate::checkpoint::{CheckpointError, TorchStateDict};

#[derive(Module, Debug)]
pub struct SpectralNormWeight<B: Backend, const D: usize> {
    /// The raw weight, PyTorch's layout (`[out, in, ...]`).
    pub weight: Param<Tensor<B, D>>,
    /// The estimate of the left singular vector (`u0`), advanced only while training.
    pub u: RunningState<Tensor<B, 1>>,
    /// `SN_eps`: 1e-8 in BigGAN's discriminators, 1e-6 in IC-GAN's generators.
    pub eps: f64,
}

impl<B: Backend, const D: usize> SpectralNormWeight<B, D> {
    /// An orthogonal weight, as BigGAN initialises both networks (`G_init` and `D_init` "ortho"), and a random
    /// unit `u`.
    pub fn init(shape: [usize; D], eps: f64, device: &B::Device) -> Self {
        // Initialised now, not lazily: clones of a lazy parameter would each draw their own values.
        let weight = Param::from_tensor(
            Initializer::Orthogonal { gain: 1.0 }
                .init::<B, D, _>(shape, device)
                .val(),
        );
        let u = Tensor::random(
            [shape[0]],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        Self {
            weight,
            u: RunningState::new(normalise(u, eps)),
            eps,
        }
    }

    /// Reads `{prefix}.weight` and `{prefix}.u0` (shape `[1, out]`) of a BigGAN state dict; the weight must have
    /// `shape`. `{prefix}.sv0`, BigGAN's log of the last sigma, is never read.
    pub fn from_torch(
        sd: &mut TorchStateDict,
        prefix: &str,
        shape: [usize; D],
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let weight = sd.take(&format!("{prefix}.weight"), shape, device)?;
        let u: Tensor<B, 2> = sd.take(&format!("{prefix}.u0"), [1, shape[0]], device)?;
        Ok(Self {
            weight: Param::from_tensor(weight),
            u: RunningState::new(u.reshape([shape[0]])),
            eps,
        })
    }

    /// The normalised weight. Under autodiff (training) the step's new `u` is kept, as BigGAN's layers do
    /// in training mode; otherwise (eval mode) `u` stays and the result only depends on the weights. The
    /// gradient flows through the weight and through sigma, not through the power iteration.
    pub fn value(&self) -> Tensor<B, D> {
        let weight = self.weight.val();
        let rows = weight.dims()[0];
        let matrix: Tensor<B, 2> = weight.clone().reshape([rows as i32, -1]);
        let u = self.u.value_sync().to_device(&weight.device());
        let v = normalise(
            matrix
                .clone()
                .detach()
                .transpose()
                .matmul(u.reshape([rows, 1]))
                .reshape([-1]),
            self.eps,
        );
        let cols = v.dims()[0];
        let u = normalise(
            matrix
                .clone()
                .detach()
                .matmul(v.clone().reshape([cols, 1]))
                .reshape([rows]),
            self.eps,
        );
        if B::ad_enabled(&weight.device()) {
            self.u.update(u.clone().detach());
        }
        let sigma = u
            .reshape([1, rows])
            .matmul(matrix)
            .matmul(v.reshape([cols, 1]))
            .reshape([1]);
        weight / sigma.reshape([1; D])
    }
}

/// `F.normalize(v, eps=eps)`: divides by the norm, or by `eps` where the norm is smaller.
fn normalise<B: Backend>(v: Tensor<B, 1>, eps: f64) -> Tensor<B, 1> {
    let norm = v.clone().square().sum().sqrt().clamp_min(eps);
    v / norm
}

/// PyTorch's default initialisation of a linear or convolution layer's bias, which BigGAN keeps (its
/// `init_weights` sets only the weights): uniform in `±1/sqrt(fan_in)`, where the fan-in is every dimension
/// of the weight but the first.
pub fn default_bias<B: Backend>(weight_shape: &[usize], device: &B::Device) -> Param<Tensor<B, 1>> {
    let fan_in: usize = weight_shape[1..].iter().product();
    let bound = 1.0 / (fan_in as f64).sqrt();
    Param::from_tensor(Tensor::random(
        [weight_shape[0]],
        burn::tensor::Distribution::Uniform(-bound, bound),
        device,
    ))
}

/// A tensor computed from parameters (a normalised weight) as a parameter of a module built for one forward
/// pass. `Param::from_tensor` would mark it as a new leaf, which autodiff refuses for a computed tensor;
/// this keeps it in the graph, so the gradient reaches the raw weights.
pub fn computed_param<B: Backend, const D: usize>(value: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::initialized(burn::module::ParamId::new(), value)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn spectral_norm_converges_to_unit_largest_singular_value() {
        type B = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let sn = SpectralNormWeight::<B, 2>::init([6, 9], 1e-8, &device);
        // Power iteration advances one step per training pass.
        for _ in 0..50 {
            let _ = sn.value();
        }
        let sigma = largest_singular_value(sn.value().inner());
        assert!((sigma - 1.0).abs() < 1e-3, "sigma {sigma}");
    }

    /// A matrix's largest singular value: the square root of the top eigenvalue of `W W^T`, by power iteration
    /// run to convergence (unlike the one step per pass under test).
    pub(crate) fn largest_singular_value(matrix: Tensor<Flex, 2>) -> f32 {
        let rows = matrix.dims()[0];
        let gram = matrix.clone().matmul(matrix.transpose());
        let mut x = Tensor::<Flex, 2>::ones([rows, 1], &gram.device());
        for _ in 0..300 {
            let y = gram.clone().matmul(x.clone());
            let norm = y.clone().square().sum().sqrt();
            x = y / norm.reshape([1, 1]);
        }
        let rayleigh: f32 = x.clone().transpose().matmul(gram.matmul(x)).into_scalar();
        rayleigh.sqrt()
    }

    #[test]
    fn eval_mode_leaves_u_alone() {
        let device = Default::default();
        let sn = SpectralNormWeight::<Flex, 2>::init([4, 5], 1e-6, &device);
        let before = sn.u.value().into_data();
        let first = sn.value().into_data();
        let second = sn.value().into_data();
        assert_eq!(first, second);
        assert_eq!(before, sn.u.value().into_data());
    }

    #[test]
    fn a_computed_param_passes_the_gradient_to_the_raw_weight() {
        type B = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let sn = SpectralNormWeight::<B, 2>::init([3, 4], 1e-6, &device);
        let param = computed_param(sn.value());
        let loss = param.val().sum();
        let grads = loss.backward();
        let grad = sn
            .weight
            .val()
            .grad(&grads)
            .expect("the raw weight has a gradient");
        assert!(grad.abs().sum().into_scalar() > 0.0);
    }
}
