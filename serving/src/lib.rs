//! Serving the Sound2Vision networks, shared by `s2v-server` and the `s2v` tool: choosing the device, loading
//! the networks, the generator runtimes (a bounded queue with dynamic batching, for a GAN or a diffusion model), the encoder service for
//! clients that cannot encode themselves, and the NATS JetStream broker that puts generator workers on other
//! machines. Nothing here trains.

pub mod broker;
pub mod device;
pub mod diffusion;
pub mod encoders;
pub mod error;
pub mod networks;
pub mod pictures;
pub mod runtime;

pub use error::{GenerationError, InvalidRequest, SubmitError};
pub use runtime::{GeneratedImage, GeneratorRuntime, ImageResult, PreviewStep, RuntimeConfig};
