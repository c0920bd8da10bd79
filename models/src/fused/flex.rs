//! The fused path on burn's CPU backend: reads `Flex` tensors' f32 storage in place, runs [`kernel`], and
//! wraps the result as a new tensor. Every function answers `None` where the path does not apply (another
//! backend, autodiff, another float type, a convolution shape the kernel does not cover), and the caller then
//! takes burn's own operations.

use std::any::Any;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};

use super::kernel::{self, ConvShape, Residual};
use super::{ChannelNorm, Epilogue};

/// `tensor` as a contiguous f32 `Flex` tensor; `None` on any other backend or float type. (Cloning a tensor
/// shares its storage.)
fn flex_f32<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> Option<FlexTensor> {
    let TensorPrimitive::Float(primitive) = tensor.clone().into_primitive() else {
        return None;
    };
    let flex = (Box::new(primitive) as Box<dyn Any>)
        .downcast::<FlexTensor>()
        .ok()?;
    (flex.dtype() == DType::F32).then(|| flex.to_contiguous())
}

/// `tensor`'s values, checked to be `len` long.
fn slice_of(tensor: &FlexTensor, len: usize) -> Option<&[f32]> {
    tensor.as_slice::<f32>().filter(|s| s.len() == len)
}

/// A new tensor of backend `B` (which is `Flex`: the caller read its inputs through [`flex_f32`]).
fn from_values<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
) -> Option<Tensor<B, D>> {
    let flex = FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    );
    let primitive = (Box::new(flex) as Box<dyn Any>)
        .downcast::<B::FloatTensorPrimitive>()
        .ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(*primitive)))
}

/// The kernel's view of `conv` on `x`, where it covers it: one group, no dilation, symmetric padding, and
/// a weight that fits the input's channels.
fn conv_shape<B: Backend>(conv: &Conv2d<B>, x: &Tensor<B, 4>) -> Option<ConvShape> {
    let [batch, c_in, in_h, in_w] = x.dims();
    let [c_out, weight_c_in, kh, kw] = conv.weight.dims();
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    let covered = conv.groups == 1
        && conv.dilation == [1, 1]
        && weight_c_in == c_in
        && conv.kernel_size == [kh, kw]
        && [batch, c_in, in_h, in_w, c_out].iter().all(|&d| d > 0);
    covered.then_some(ConvShape {
        batch,
        c_in,
        in_h,
        in_w,
        c_out,
        kernel: [kh, kw],
        stride: conv.stride,
        padding,
    })
}

/// The epilogue's per-sample `(scale, shift)` `[batch, c_out]`, with the convolution's bias folded into the
/// shift: `(sum + bias) * scale + shift = sum * scale + (bias * scale + shift)`.
#[allow(clippy::type_complexity)]
fn scale_and_shift<B: Backend>(
    conv: &Conv2d<B>,
    norm: Option<&dyn ChannelNorm<B>>,
    batch: usize,
) -> (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>) {
    let bias = conv
        .bias
        .as_ref()
        .map(|b| b.val().unsqueeze_dim::<2>(0).repeat_dim(0, batch));
    match (norm.map(|n| n.inference_affine(batch)), bias) {
        (Some((scale, shift)), Some(bias)) => {
            let shift = bias * scale.clone() + shift;
            (Some(scale), Some(shift))
        }
        (Some((scale, shift)), None) => (Some(scale), Some(shift)),
        (None, bias) => (None, bias),
    }
}

/// A `[batch, channels]` tensor's storage where there is one; `None` where it is not `Flex` f32.
fn optional_flex<B: Backend>(rows: Option<Tensor<B, 2>>) -> Option<Option<FlexTensor>> {
    match rows {
        None => Some(None),
        Some(t) => flex_f32(&t).map(Some),
    }
}

/// The values of an optional tensor, checked to be `len` long.
fn optional_slice(tensor: &Option<FlexTensor>, len: usize) -> Option<Option<&[f32]>> {
    match tensor {
        None => Some(None),
        Some(t) => slice_of(t, len).map(Some),
    }
}

/// A residual's storage, where its shape is the output's (or half its height and width when `upsampled`).
fn residual_of<B: Backend>(
    residual: &Tensor<B, 4>,
    upsampled: bool,
    shape: &ConvShape,
    [out_h, out_w]: [usize; 2],
) -> Option<FlexTensor> {
    let expected = match upsampled {
        false => [out_h, out_w],
        true if out_h % 2 == 0 && out_w % 2 == 0 => [out_h / 2, out_w / 2],
        true => return None,
    };
    (residual.dims() == [shape.batch, shape.c_out, expected[0], expected[1]])
        .then(|| flex_f32(residual))
        .flatten()
}

pub(super) fn conv2d<B: Backend>(
    conv: &Conv2d<B>,
    x: &Tensor<B, 4>,
    epilogue: &Epilogue<B>,
) -> Option<Tensor<B, 4>> {
    let input = flex_f32(x)?;
    let shape = conv_shape(conv, x)?;
    let [out_h, out_w] = shape.output_size()?;
    let (x_len, w_len, out_len) = shape.lengths([out_h, out_w]);
    let weight = flex_f32(&conv.weight.val())?;
    let rows = shape.batch * shape.c_out;
    let (scale, shift) = scale_and_shift(conv, epilogue.norm, shape.batch);
    let (scale, shift) = (optional_flex(scale)?, optional_flex(shift)?);
    let residual = match &epilogue.residual {
        None => None,
        Some((r, upsampled)) => Some((
            residual_of(r, *upsampled, &shape, [out_h, out_w])?,
            *upsampled,
        )),
    };
    let fused = kernel::Epilogue {
        scale: optional_slice(&scale, rows)?,
        shift: optional_slice(&shift, rows)?,
        residual: match &residual {
            None => None,
            Some((values, upsampled)) => Some(Residual {
                values: values.as_slice::<f32>()?,
                upsampled: *upsampled,
            }),
        },
        activation: epilogue.activation,
    };
    let mut out = vec![0.0; out_len];
    kernel::conv2d(
        slice_of(&input, x_len)?,
        slice_of(&weight, w_len)?,
        &shape,
        [out_h, out_w],
        &fused,
        &mut out,
    );
    from_values(out, [shape.batch, shape.c_out, out_h, out_w])
}

pub(super) fn norm_relu<B: Backend>(
    x: &Tensor<B, 4>,
    norm: &dyn ChannelNorm<B>,
    upsample: bool,
) -> Option<Tensor<B, 4>> {
    let input = flex_f32(x)?;
    let [n, c, h, w] = x.dims();
    let (scale, shift) = norm.inference_affine(n);
    let (scale, shift) = (flex_f32(&scale)?, flex_f32(&shift)?);
    let factor = if upsample { 2 } else { 1 };
    let mut out = vec![0.0; n * c * h * w * factor * factor];
    kernel::norm_relu(
        slice_of(&input, n * c * h * w)?,
        slice_of(&scale, n * c)?,
        slice_of(&shift, n * c)?,
        [h, w],
        upsample,
        &mut out,
    );
    from_values(out, [n, c, h * factor, w * factor])
}

pub(super) fn max_pool2d<B: Backend>(
    x: &Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 4>> {
    let input = flex_f32(x)?;
    let [n, c, h, w] = x.dims();
    // Every window must hold an input value (PyTorch refuses padding over half the window).
    if 2 * padding > kernel {
        return None;
    }
    let out_h = kernel::window_count(h, kernel, stride, padding)?;
    let out_w = kernel::window_count(w, kernel, stride, padding)?;
    let mut out = vec![0.0; n * c * out_h * out_w];
    kernel::max_pool2d(
        slice_of(&input, n * c * h * w)?,
        [h, w],
        [kernel, stride, padding],
        [out_h, out_w],
        &mut out,
    );
    from_values(out, [n, c, out_h, out_w])
}
