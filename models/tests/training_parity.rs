//! Parity of training with IC-GAN's own code: one training pass of its `BigGAN.Generator` and
//! `BigGAN.Discriminator` (`tests/data/icgan_training`, written by `make_fixture.py` there with IC-GAN's
//! networks at small widths). Loaded into [`TrainableGenerator`] and [`Discriminator`], the same pass must give
//! the same outputs, loss and gradient of every parameter, and leave the same `u` vectors and stored batch
//! statistics behind.

use std::collections::HashMap;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use s2v_models::checkpoint::{TensorSnapshot, TorchNamed, TorchStateDict, read_torch_tensors};
use s2v_models::discriminator::{Discriminator, DiscriminatorConfig};
use s2v_models::loss::hinge_discriminator;
use s2v_models::trainable_generator::TrainableGenerator;
use s2v_tests::{checkout, max_abs_diff};

type A = Autodiff<Flex>;

/// One fixture file: `state.*` (before the pass), `input.*`, `output.*`, `grad.*` and `after.*`.
struct Fixture(HashMap<String, TensorSnapshot>);

impl Fixture {
    fn read(network: &str) -> Self {
        let path = checkout().join(format!("tests/data/icgan_training/{network}.pth"));
        Self(read_torch_tensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// The tensors under `prefix`, without it.
    fn section(&self, prefix: &str) -> HashMap<String, TensorSnapshot> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
            .collect()
    }

    fn values(&self, name: &str) -> Vec<f32> {
        let snapshot = self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("the fixture has no {name}"));
        snapshot
            .to_data()
            .unwrap()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn tensor<const D: usize>(&self, name: &str) -> Tensor<A, D> {
        let shape: [usize; D] = self.0[name].shape.to_vec().try_into().unwrap();
        Tensor::from_data(
            TensorData::new(self.values(name), shape),
            &Default::default(),
        )
    }
}

fn values<const D: usize>(tensor: Tensor<Flex, D>) -> Vec<f32> {
    tensor.into_data().to_vec().unwrap()
}

fn largest(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Largest difference relative to the largest reference value (the error of every figure here; the L2 ratio of
/// `s2v_tests::relative_error` would hide one wrong value among many).
fn max_relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    max_abs_diff(ours, reference) / largest(reference).max(f32::MIN_POSITIVE)
}

/// Compares every `{prefix}<name>` of the fixture with `ours[name]`, each relative to its largest reference
/// value, or to a thousandth of the section's largest where a tensor is all but zero (the gradient of a bias
/// that batch norm follows is zero but for rounding). Fails naming every tensor off by more than `tolerance`.
fn compare_section(
    fixture: &Fixture,
    prefix: &str,
    ours: &HashMap<String, Vec<f32>>,
    tolerance: f32,
) {
    let reference: Vec<(String, Vec<f32>)> = fixture
        .section(prefix)
        .into_keys()
        .map(|name| {
            let values = fixture.values(&format!("{prefix}{name}"));
            (name, values)
        })
        .collect();
    assert!(!reference.is_empty(), "the fixture has no {prefix}*");
    let floor = 1e-3
        * reference
            .iter()
            .map(|(_, values)| largest(values))
            .fold(0f32, f32::max);
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for (name, values) in &reference {
        let mine = ours
            .get(name)
            .unwrap_or_else(|| panic!("{prefix}{name}: we have no such tensor"));
        assert_eq!(mine.len(), values.len(), "{prefix}{name}: length");
        let err = max_abs_diff(mine, values) / largest(values).max(floor);
        if err >= tolerance {
            failures.push(format!("{prefix}{name}: relative error {err:e}"));
        }
        worst = worst.max(err);
    }
    failures.sort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{prefix}*: {} tensors, worst relative error {worst:e}",
        reference.len()
    );
}

/// Replaces every parameter by its gradient (zero where it has none), so that a module's own state-dict writer
/// names the gradients.
struct ToGradients(GradientsParams);

impl ModuleMapper<Flex> for ToGradients {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<Flex, D>>,
    ) -> Param<Tensor<Flex, D>> {
        let grad = self
            .0
            .get::<Flex, D>(param.id)
            .unwrap_or_else(|| param.val().zeros_like());
        Param::initialized(param.id, grad)
    }
}

fn state_dict_values(sd: HashMap<String, TensorSnapshot>) -> HashMap<String, Vec<f32>> {
    sd.into_iter()
        .map(|(k, v)| (k, v.to_data().unwrap().convert::<f32>().to_vec().unwrap()))
        .collect()
}

/// After the pass that gave `loss`: every parameter's gradient and the state left behind (`u0`, stored
/// statistics) against the fixture's `grad.*` and `after.*`, both named by the network's own state-dict writer.
fn compare_gradients_and_state<M>(fixture: &Fixture, module: M, loss: Tensor<A, 1>)
where
    M: AutodiffModule<A>,
    M::InnerModule: TorchNamed<Flex>,
{
    let grads = GradientsParams::from_grads(loss.backward(), &module);
    let after = module.valid();
    // Read before the mapping below, which also maps the running states (`u`, statistics) the clone shares.
    let state_after = state_dict_values(after.torch_state_dict());
    let gradients = after.map(&mut ToGradients(grads)).torch_state_dict();
    compare_section(fixture, "grad.", &state_dict_values(gradients), 1e-3);
    compare_section(fixture, "after.", &state_after, 1e-4);
}

#[test]
fn a_training_pass_of_the_generator_matches_icgan() {
    let fixture = Fixture::read("generator");
    let sd = TorchStateDict::from_tensors(fixture.section("state."));
    let generator = TrainableGenerator::<A>::from_torch(sd, &Default::default()).unwrap();
    assert!(
        generator.config.attention.contains(&true),
        "the fixture covers attention"
    );

    let images = generator.forward(fixture.tensor("input.z"), fixture.tensor("input.features"));
    let err = max_abs_diff(
        &values(images.clone().inner()),
        &fixture.values("output.images"),
    );
    eprintln!("images: max abs error {err:e}");
    assert!(err < 1e-4, "images: max abs error {err}");
    let loss = (images * fixture.tensor::<4>("input.loss_weights")).sum();
    let err = max_relative_error(
        &values(loss.clone().inner()),
        &fixture.values("output.loss"),
    );
    assert!(err < 1e-4, "loss: relative error {err}");

    // The stored statistics: a running mean with momentum 0.1 and the unbiased batch variance.
    compare_gradients_and_state(&fixture, generator, loss);
}

#[test]
fn a_training_pass_of_the_discriminator_matches_icgan() {
    let fixture = Fixture::read("discriminator");
    let features = fixture.section("input.")["features"].shape[1];
    let config = DiscriminatorConfig::biggan(2, 64, features);
    let sd = TorchStateDict::from_tensors(fixture.section("state."));
    let d = Discriminator::<A>::from_torch(sd, &config, &Default::default()).unwrap();

    // Real and generated images in one pass, as IC-GAN's `G_D` runs them; the first half are the real ones.
    let scores = d.forward(
        fixture.tensor("input.images"),
        fixture.tensor("input.features"),
    );
    let err = max_relative_error(
        &values(scores.clone().inner()),
        &fixture.values("output.scores"),
    );
    eprintln!("scores: relative error {err:e}");
    assert!(err < 1e-4, "scores: relative error {err}");
    let half = scores.dims()[0] / 2;
    let loss = hinge_discriminator(scores.clone().slice(0..half), scores.slice(half..2 * half));
    let err = max_relative_error(
        &values(loss.clone().inner()),
        &fixture.values("output.loss"),
    );
    assert!(err < 1e-4, "loss: relative error {err}");

    compare_gradients_and_state(&fixture, d, loss);
}
