//! Building burn layers from tensors, and the layers PyTorch has that burn does not.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;

pub fn conv_from_tensors<B: Backend>(
    weight: Tensor<B, 4>,
    bias: Option<Param<Tensor<B, 1>>>,
    stride: usize,
    padding: usize,
) -> Conv2d<B> {
    conv_from_params(Param::from_tensor(weight), bias, stride, padding)
}

/// A new convolution with "same" padding (`kernel / 2` on every side), as every network here pads, drawn from
/// `initializer` (`None`: burn's default, which matches PyTorch's for the weight).
pub fn init_conv<B: Backend>(
    [c_in, c_out]: [usize; 2],
    kernel: usize,
    stride: usize,
    bias: bool,
    initializer: Option<Initializer>,
    device: &B::Device,
) -> Conv2d<B> {
    let padding = kernel / 2;
    let config = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias);
    match initializer {
        Some(initializer) => config.with_initializer(initializer),
        None => config,
    }
    .init(device)
}

/// `nn.Conv2d` around a weight parameter `[out, in, kh, kw]` (a loaded tensor, or one computed for a pass).
pub fn conv_from_params<B: Backend>(
    weight: Param<Tensor<B, 4>>,
    bias: Option<Param<Tensor<B, 1>>>,
    stride: usize,
    padding: usize,
) -> Conv2d<B> {
    let [_, _, kh, kw] = weight.shape().dims();
    Conv2d {
        weight,
        bias,
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    }
}

/// Nearest-neighbour upsampling by 2 (`F.interpolate(x, scale_factor=2)`). Source index `floor(o / 2)` is
/// exact in any float type, so every backend copies the same values.
pub fn upsample_nearest_2x<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        [h * 2, w * 2],
        InterpolateOptions::new(InterpolateMode::Nearest),
    )
}

/// Rows divided by their L2 norm (`F.normalize(x, dim=1)`, eps 1e-12).
pub fn l2_normalise<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn upsample_repeats_each_pixel() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_data([[[[1.0, 2.0], [3.0, 4.0]]]], &device);
        let y = upsample_nearest_2x(x)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        assert_eq!(&y[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&y[8..], &[3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn upsample_gradient_sums_the_four_copies_of_each_pixel() {
        type A = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let x = Tensor::<A, 4>::from_data([[[[1.0, 2.0], [3.0, 4.0]]]], &device).require_grad();
        // Weight each output pixel by its own index, so each input's gradient is the sum of its four.
        let weights = Tensor::<A, 1>::from_data(
            TensorData::new((0..16).map(|i| i as f32).collect::<Vec<_>>(), [16]),
            &device,
        )
        .reshape([1, 1, 4, 4]);
        let loss = (upsample_nearest_2x(x.clone()) * weights).sum();
        let grad = x.grad(&loss.backward()).unwrap();
        let grad = grad.into_data().into_vec::<f32>().unwrap();
        assert_eq!(
            grad,
            [
                0. + 1. + 4. + 5.,
                2. + 3. + 6. + 7.,
                8. + 9. + 12. + 13.,
                10. + 11. + 14. + 15.
            ]
        );
    }
}
