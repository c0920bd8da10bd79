//! SimCLR's projection head: the MLP between the image encoder's feature and the contrastive loss. Only
//! training uses it; the feature before it is what the generator is conditioned on.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Module, Debug)]
pub struct ProjectionHead<B: Backend> {
    pub hidden: Linear<B>,
    pub output: Linear<B>,
}

impl<B: Backend> ProjectionHead<B> {
    pub fn init(input: usize, hidden: usize, output: usize, device: &B::Device) -> Self {
        Self {
            hidden: LinearConfig::new(input, hidden).init(device),
            output: LinearConfig::new(hidden, output).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.output.forward(relu(self.hidden.forward(x)))
    }
}
