//! Convolutions with what follows them fused in, for inference on the CPU.
//!
//! burn runs a ResNet block as a convolution, then batch norm, the residual sum and ReLU as separate passes
//! over memory, and its CPU backend's convolution converts its input to NHWC and reshapes its weight on every
//! call. Here a network states what follows each convolution ([`Epilogue`]: a batch norm, a residual, an
//! activation); on the CPU backend (`Flex`, f32, not under autodiff) that runs inside the convolution on each
//! output tile ([`kernel`]), and everywhere else (training, GPUs) as the same composed burn operations as
//! before, so gradients and GPU results are unchanged. This is the extension burn's own convolution would
//! need; it lives here until burn has it.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::layers::upsample_nearest_2x;
use crate::norm::apply_batch_norm;

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod kernel;
#[cfg(feature = "flex")]
mod threads;

/// The function applied to each value last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    Tanh,
}

/// A per-channel normalisation that can precede or follow a convolution.
pub trait ChannelNorm<B: Backend> {
    /// The layer as every backend runs it (batch statistics under autodiff).
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4>;

    /// What it amounts to at inference for a batch of `batch`: `x * scale + shift` with `scale` and `shift`
    /// `[batch, channels]`.
    fn inference_affine(&self, batch: usize) -> (Tensor<B, 2>, Tensor<B, 2>);
}

impl<B: Backend> ChannelNorm<B> for BatchNorm<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        apply_batch_norm(self, x)
    }

    fn inference_affine(&self, batch: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (scale, shift) = crate::norm::stored_affine(self);
        let rows = |v: Tensor<B, 1>| v.unsqueeze_dim::<2>(0).repeat_dim(0, batch);
        (rows(scale), rows(shift))
    }
}

/// What follows a convolution, applied in this order: its bias, a normalisation, a residual sum, an activation.
pub struct Epilogue<'a, B: Backend> {
    norm: Option<&'a dyn ChannelNorm<B>>,
    residual: Option<(Tensor<B, 4>, bool)>,
    activation: Activation,
}

impl<'a, B: Backend> Epilogue<'a, B> {
    /// Nothing but the convolution's bias.
    pub fn none() -> Self {
        Self {
            norm: None,
            residual: None,
            activation: Activation::Identity,
        }
    }

    pub fn norm(mut self, norm: &'a dyn ChannelNorm<B>) -> Self {
        self.norm = Some(norm);
        self
    }

    /// Adds `residual`, of the output's shape.
    pub fn residual(mut self, residual: Tensor<B, 4>) -> Self {
        self.residual = Some((residual, false));
        self
    }

    /// Adds `residual` upsampled 2 x 2 (nearest): half the output's height and width.
    pub fn upsampled_residual(mut self, residual: Tensor<B, 4>) -> Self {
        self.residual = Some((residual, true));
        self
    }

    pub fn relu(mut self) -> Self {
        self.activation = Activation::Relu;
        self
    }

    pub fn tanh(mut self) -> Self {
        self.activation = Activation::Tanh;
        self
    }

    /// The epilogue as composed burn operations on the convolution's output.
    fn apply(self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = match self.norm {
            Some(norm) => norm.forward(y),
            None => y,
        };
        let y = match self.residual {
            Some((r, false)) => y + r,
            Some((r, true)) => y + upsample_nearest_2x(r),
            None => y,
        };
        match self.activation {
            Activation::Identity => y,
            Activation::Relu => relu(y),
            Activation::Tanh => y.tanh(),
        }
    }
}

/// `epilogue(conv(x))`, fused on the CPU backend.
pub fn conv2d<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    epilogue: Epilogue<B>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(y) = flex::conv2d(conv, &x, &epilogue) {
        return y;
    }
    epilogue.apply(conv.forward(x))
}

/// `relu(norm(x))`, upsampled 2 x 2 (nearest) when `upsample`: the pre-activation of BigGAN's blocks, in one
/// pass on the CPU backend.
pub fn norm_relu<B: Backend>(
    x: Tensor<B, 4>,
    norm: &dyn ChannelNorm<B>,
    upsample: bool,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(y) = flex::norm_relu(&x, norm, upsample) {
        return y;
    }
    let y = relu(norm.forward(x));
    if upsample { upsample_nearest_2x(y) } else { y }
}

/// Max pooling with a square window, no dilation, as `burn::tensor::module::max_pool2d` with
/// `ceil_mode = false`.
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(y) = flex::max_pool2d(&x, kernel, stride, padding) {
        return y;
    }
    burn::tensor::module::max_pool2d(
        x,
        [kernel, kernel],
        [stride, stride],
        [padding, padding],
        [1, 1],
        false,
    )
}

#[cfg(test)]
mod tests;
