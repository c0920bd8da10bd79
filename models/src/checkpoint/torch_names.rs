//! Reading and writing a trained network's state dict under PyTorch's names with one list of names: a network
//! ([`TorchNamed`]) visits each of its tensors with its name, and the visitor ([`TorchNames`]) either writes it
//! or replaces it with the state dict's tensor of the same shape.

use std::collections::HashMap;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn_store::TensorSnapshot;

use super::{CheckpointError, TorchStateDict};
use crate::spectral_norm::SpectralNormWeight;

/// A network that lists its tensors under PyTorch's names once ([`TorchNamed::visit_torch_names`]) and so
/// both writes and reads state dicts by that one list.
pub trait TorchNamed<B: Backend>: Clone + Sized {
    /// Visits every tensor with its name in the state dict.
    fn visit_torch_names<N: TorchNames<B>>(&mut self, names: &mut N)
    -> Result<(), CheckpointError>;

    /// The state dict: every visited tensor under its name.
    fn torch_state_dict(&self) -> HashMap<String, TensorSnapshot> {
        let mut writer = TorchWriter::default();
        // Writing only reads the tensors, and the clone shares them (parameters must not be lazy, or the clone
        // would draw values of its own).
        self.clone()
            .visit_torch_names(&mut writer)
            .expect("writing a state dict cannot fail");
        writer.0
    }

    /// Replaces every visited tensor with the state dict's of the same name and shape, then fails on any tensor
    /// of the state dict left over that `ignored` does not match.
    fn read_torch(
        mut self,
        mut sd: TorchStateDict,
        ignored: impl Fn(&str) -> bool,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        self.visit_torch_names(&mut TorchReader {
            sd: &mut sd,
            device,
        })?;
        sd.finish(ignored)?;
        Ok(self)
    }
}

/// What is done with each tensor of a state dict: written or read.
pub trait TorchNames<B: Backend> {
    /// A spectrally normalised weight as BigGAN's layers store it: `{prefix}.weight` and `{prefix}.u0`
    /// (`[1, out]`).
    fn sn_weight<const D: usize>(
        &mut self,
        prefix: &str,
        weight: &mut SpectralNormWeight<B, D>,
    ) -> Result<(), CheckpointError>;

    fn param<const D: usize>(
        &mut self,
        name: &str,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<(), CheckpointError>;

    fn state(
        &mut self,
        name: &str,
        state: &mut RunningState<Tensor<B, 1>>,
    ) -> Result<(), CheckpointError>;
}

/// A state dict being written.
#[derive(Default)]
struct TorchWriter(HashMap<String, TensorSnapshot>);

impl TorchWriter {
    fn tensor<B: Backend, const D: usize>(&mut self, name: &str, tensor: Tensor<B, D>) {
        let snapshot =
            TensorSnapshot::from_data(tensor.into_data(), vec![], vec![], Default::default());
        self.0.insert(name.to_string(), snapshot);
    }
}

impl<B: Backend> TorchNames<B> for TorchWriter {
    fn sn_weight<const D: usize>(
        &mut self,
        prefix: &str,
        weight: &mut SpectralNormWeight<B, D>,
    ) -> Result<(), CheckpointError> {
        self.tensor(&format!("{prefix}.weight"), weight.weight.val());
        let u = weight.u.value_sync();
        let rows = u.dims()[0];
        self.tensor(&format!("{prefix}.u0"), u.reshape([1, rows]));
        Ok(())
    }

    fn param<const D: usize>(
        &mut self,
        name: &str,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<(), CheckpointError> {
        self.tensor(name, param.val());
        Ok(())
    }

    fn state(
        &mut self,
        name: &str,
        state: &mut RunningState<Tensor<B, 1>>,
    ) -> Result<(), CheckpointError> {
        self.tensor(name, state.value_sync());
        Ok(())
    }
}

/// Replaces each tensor of a freshly initialised network with the state dict's, which must have its shape.
struct TorchReader<'a, B: Backend> {
    sd: &'a mut TorchStateDict,
    device: &'a B::Device,
}

impl<B: Backend> TorchNames<B> for TorchReader<'_, B> {
    fn sn_weight<const D: usize>(
        &mut self,
        prefix: &str,
        weight: &mut SpectralNormWeight<B, D>,
    ) -> Result<(), CheckpointError> {
        let shape = weight.weight.val().dims();
        *weight = SpectralNormWeight::from_torch(self.sd, prefix, shape, weight.eps, self.device)?;
        Ok(())
    }

    fn param<const D: usize>(
        &mut self,
        name: &str,
        param: &mut Param<Tensor<B, D>>,
    ) -> Result<(), CheckpointError> {
        *param = Param::from_tensor(self.sd.take(name, param.val().dims(), self.device)?);
        Ok(())
    }

    fn state(
        &mut self,
        name: &str,
        state: &mut RunningState<Tensor<B, 1>>,
    ) -> Result<(), CheckpointError> {
        let shape = state.value_sync().dims();
        *state = RunningState::new(self.sd.take(name, shape, self.device)?);
        Ok(())
    }
}
