//! Reading and writing a trained network's state dict under PyTorch's names with one list of names: a network
//! visits each of its tensors with its name ([`TorchNames`]), and the visitor either writes it
//! ([`TorchWriter`]) or replaces it with the state dict's tensor of the same shape ([`TorchReader`]).

use std::collections::HashMap;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn_store::TensorSnapshot;

use super::{CheckpointError, TorchStateDict};
use crate::spectral_norm::SpectralNormWeight;

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
pub struct TorchWriter(pub HashMap<String, TensorSnapshot>);

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
pub struct TorchReader<'a, B: Backend> {
    pub sd: &'a mut TorchStateDict,
    pub device: &'a B::Device,
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
