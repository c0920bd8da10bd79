//! The fused path against the same epilogue as composed burn operations, on shapes that cross every edge:
//! padding on each side, strides, tiles spanning two samples, many tiles in parallel, one tile with `gemm`'s
//! threads.

use burn::backend::Flex;
use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Distribution, Tolerance};

use super::*;
use crate::generator::{ConditionalBatchNorm, Conditioned};
use crate::layers::init_conv;

type B = Flex;

fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    B::seed(&Default::default(), seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn conv(c_in: usize, c_out: usize, kernel: usize, stride: usize, bias: bool) -> Conv2d<B> {
    B::seed(&Default::default(), (c_in * 31 + c_out * 7 + kernel) as u64);
    let mut conv = init_conv(
        [c_in, c_out],
        kernel,
        stride,
        bias,
        None,
        &Default::default(),
    );
    if let Some(b) = &conv.bias {
        // burn initialises biases small; make them matter.
        conv.bias = Some(Param::from_tensor(b.val() * 10.0));
    }
    conv
}

/// A batch norm with stored statistics and parameters away from the identity.
fn batch_norm(channels: usize) -> BatchNorm<B> {
    let mut bn = BatchNormConfig::new(channels).init::<B>(&Default::default());
    let positive = |seed| random([channels], seed).abs().add_scalar(0.5);
    bn.gamma = Param::from_tensor(positive(1));
    bn.beta = Param::from_tensor(random([channels], 2));
    bn.running_mean = RunningState::new(random([channels], 3));
    bn.running_var = RunningState::new(positive(4));
    bn
}

fn assert_close(fused: Tensor<B, 4>, reference: Tensor<B, 4>) {
    assert_eq!(fused.dims(), reference.dims());
    fused
        .into_data()
        .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::rel_abs(1e-4, 1e-5));
}

/// Runs `conv` on `x` with the epilogue `build` makes, through the fused kernel (which must take it) and as
/// burn's operations, and compares.
fn check_conv<'a>(conv: &Conv2d<B>, x: Tensor<B, 4>, build: &dyn Fn() -> Epilogue<'a, B>) {
    let fused = flex::conv2d(conv, &x, &build()).expect("the fused path covers this convolution");
    let reference = build().apply(conv.forward(x));
    assert_close(fused, reference);
}

#[test]
fn convolution_with_bias_matches_burn_at_every_geometry() {
    // (c_in, c_out, kernel, stride, input height, width): odd sizes put padding under partial tiles.
    let cases = [
        (1, 8, 7, 2, 37, 29),
        (5, 6, 3, 1, 13, 11),
        (5, 6, 3, 2, 13, 12),
        (6, 4, 1, 2, 9, 7),
        (6, 4, 1, 1, 9, 7),
        (3, 2, 5, 1, 4, 6),
    ];
    for (c_in, c_out, kernel, stride, h, w) in cases {
        for bias in [false, true] {
            let layer = conv(c_in, c_out, kernel, stride, bias);
            check_conv(&layer, random([3, c_in, h, w], 9), &Epilogue::none);
        }
    }
}

#[test]
fn pointwise_convolutions_read_tiles_within_a_sample_in_place() {
    // 512 input channels make 256-position tiles, against 400 positions a sample: some tiles lie within a
    // sample, read in place; one spans two samples, copied.
    let layer = conv(512, 8, 1, 1, true);
    check_conv(&layer, random([2, 512, 20, 20], 21), &|| {
        Epilogue::none().relu()
    });
}

#[test]
fn batch_norm_residual_and_relu_run_inside_the_convolution() {
    let layer = conv(4, 6, 3, 1, true);
    let x = random([2, 4, 10, 9], 5);
    let residual = random([2, 6, 10, 9], 6);
    let bn = &batch_norm(6);
    check_conv(&layer, x.clone(), &|| Epilogue::none().norm(bn));
    check_conv(&layer, x.clone(), &|| Epilogue::none().norm(bn).relu());
    check_conv(&layer, x.clone(), &|| {
        Epilogue::none().norm(bn).residual(residual.clone()).relu()
    });
    check_conv(&layer, x, &|| Epilogue::none().tanh());
}

#[test]
fn an_upsampled_residual_is_added_at_twice_its_size() {
    let layer = conv(3, 5, 3, 1, true);
    let shortcut = random([2, 5, 4, 6], 7);
    check_conv(&layer, random([2, 3, 8, 12], 8), &|| {
        Epilogue::none().upsampled_residual(shortcut.clone())
    });
}

#[test]
fn many_tiles_in_parallel_and_one_large_tile_give_the_same_result() {
    // 2 x 64 x 80 outputs of a one-channel 3 x 3 convolution: several full tiles and a partial one.
    let small_channels = conv(1, 4, 3, 1, true);
    check_conv(&small_channels, random([2, 1, 64, 80], 10), &|| {
        Epilogue::none().relu()
    });
    // Few positions and a wide weight: one tile, multiplied on gemm's threads.
    let wide = conv(96, 160, 3, 1, true);
    check_conv(&wide, random([1, 96, 6, 5], 11), &Epilogue::none);
}

#[test]
fn a_conditional_batch_norm_folds_in_per_sample() {
    let device = Default::default();
    B::seed(&device, 12);
    let mut cbn = ConditionalBatchNorm::<B>::init(6, 5, &device);
    cbn.stored_mean = RunningState::new(random([6], 13));
    cbn.stored_var = RunningState::new(random([6], 14).abs().add_scalar(0.5));
    let norm = &Conditioned {
        norm: &cbn,
        y: random([3, 5], 15),
    };
    let layer = conv(4, 6, 3, 1, true);
    check_conv(&layer, random([3, 4, 7, 8], 16), &|| {
        Epilogue::none().norm(norm).relu()
    });

    let x = random([3, 6, 5, 4], 17);
    for upsample in [false, true] {
        let fused = flex::norm_relu(&x, norm, upsample).expect("the fused path covers this");
        let reference = relu(norm.forward(x.clone()));
        let reference = if upsample {
            upsample_nearest_2x(reference)
        } else {
            reference
        };
        assert_close(fused, reference);
    }
}

#[test]
fn max_pooling_matches_burn_and_keeps_nan() {
    for (kernel, stride, padding, h, w) in [(3, 2, 1, 11, 14), (2, 2, 0, 8, 6), (3, 1, 1, 5, 4)] {
        let x = random([2, 3, h, w], 20);
        let fused = flex::max_pool2d(&x, kernel, stride, padding).expect("covered");
        let reference = burn::tensor::module::max_pool2d(
            x,
            [kernel, kernel],
            [stride, stride],
            [padding, padding],
            [1, 1],
            false,
        );
        assert_close(fused, reference);
    }
    let mut values = vec![1.0f32; 16];
    values[5] = f32::NAN;
    let x = Tensor::<B, 4>::from_data(TensorData::new(values, [1, 1, 4, 4]), &Default::default());
    let pooled = max_pool2d(x, 2, 2, 0).into_data().to_vec::<f32>().unwrap();
    assert!(pooled[0].is_nan() && pooled[1..] == [1.0, 1.0, 1.0]);
}

#[test]
fn relu_keeps_nan_as_burns_does() {
    let mut layer = conv(1, 1, 1, 1, false);
    // A set weight: tests run in parallel on one seeded generator, so a drawn one may come out negative.
    layer.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.5f32], [1, 1, 1, 1]),
        &Default::default(),
    ));
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(vec![f32::NAN, -1.0, 2.0], [1, 1, 1, 3]),
        &Default::default(),
    );
    let out = conv2d(&layer, x, Epilogue::none().relu())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(out[0].is_nan() && out[1..] == [0.0, 1.0], "{out:?}");
}

#[test]
fn uncovered_convolutions_and_autodiff_take_burns_path() {
    let mut grouped = conv(4, 4, 3, 1, true);
    grouped.groups = 2;
    grouped.weight = Param::from_tensor(random([4, 2, 3, 3], 18));
    let x = random([1, 4, 6, 6], 19);
    assert!(flex::conv2d(&grouped, &x, &Epilogue::none()).is_none());
    assert_close(
        conv2d(&grouped, x.clone(), Epilogue::none().relu()),
        relu(grouped.forward(x)),
    );

    type Ad = burn::backend::Autodiff<Flex>;
    let layer = init_conv::<Ad>([2, 3], 3, 1, true, None, &Default::default());
    let x = Tensor::<Ad, 4>::random([1, 2, 5, 5], Distribution::Default, &Default::default());
    assert!(flex::conv2d(&layer, &x, &Epilogue::none()).is_none());
}
