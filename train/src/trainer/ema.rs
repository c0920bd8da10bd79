//! An exponential moving average of a module's weights, as BigGAN keeps `G_ema` beside `G`: the generator
//! IC-GAN publishes (`G_ema_best0.pth`) is such an average. Adversarial training makes the weights oscillate
//! from step to step, and the average smooths out the artefacts (stripes, grids) of any single step. Like
//! BigGAN's `ema`, which blends the whole state dict, it also averages running statistics (batch norm's
//! stored mean and variance).

use anyhow::{Result, ensure};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// `average * decay + current * (1 - decay)` for every float tensor, matched by their order in the module
/// (the two must be the same architecture). A decay of 0 copies `current`.
pub fn blend<B: Backend, M: Module<B>>(average: M, current: &M, decay: f64) -> Result<M> {
    let mut collect = Collect(Vec::new());
    current.visit(&mut collect);
    let expected = collect.0.len();
    let mut mapper = Blend {
        sources: collect.0.into_iter(),
        decay,
        missing: 0,
    };
    let blended = average.map(&mut mapper);
    let left = mapper.sources.len();
    ensure!(
        mapper.missing == 0 && left == 0,
        "the moving average and the module differ: {expected} tensors in the module, {} unmatched",
        mapper.missing + left
    );
    Ok(blended)
}

struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val().detach();
        let elements = tensor.shape().num_elements();
        self.0.push(tensor.reshape([elements]));
    }
}

struct Blend<B: Backend> {
    sources: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
    missing: usize,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let blended = match self.sources.next() {
            Some(source) if source.dims()[0] == shape.num_elements() => {
                tensor.mul_scalar(self.decay) + source.reshape(shape).mul_scalar(1.0 - self.decay)
            }
            _ => {
                self.missing += 1;
                tensor
            }
        };
        Param::from_mapped_value(id, blended, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::RunningState;
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        linear: Linear<B>,
        stored: RunningState<Tensor<B, 1>>,
    }

    fn net(value: f32) -> Net<Flex> {
        let device = Default::default();
        let linear = Linear {
            weight: Param::from_tensor(Tensor::full([3, 2], value, &device)),
            bias: Some(Param::from_tensor(Tensor::full([2], value, &device))),
        };
        Net {
            linear,
            stored: RunningState::new(Tensor::full([4], value, &device)),
        }
    }

    fn values(net: &Net<Flex>) -> Vec<Vec<f32>> {
        let mut collect = Collect(Vec::new());
        net.visit(&mut collect);
        collect
            .0
            .into_iter()
            .map(|t| t.into_data().to_vec().unwrap())
            .collect()
    }

    #[test]
    fn blends_weights_and_running_statistics() {
        let blended = blend(net(1.0), &net(3.0), 0.75).unwrap();
        let all = values(&blended);
        assert_eq!(all.len(), 3, "weight, bias and the running state");
        assert!(
            all.iter().flatten().all(|v| (v - 1.5).abs() < 1e-6),
            "{all:?}"
        );
        let copied = blend(net(1.0), &net(3.0), 0.0).unwrap();
        assert!(values(&copied).iter().flatten().all(|v| *v == 3.0));
    }

    #[test]
    fn a_different_architecture_is_an_error() {
        let device = Default::default();
        let other = Net::<Flex> {
            linear: LinearConfig::new(3, 2).with_bias(false).init(&device),
            stored: RunningState::new(Tensor::zeros([4], &device)),
        };
        let error = blend(net(1.0), &other, 0.5).unwrap_err().to_string();
        assert!(error.contains("differ"), "{error}");
    }
}
