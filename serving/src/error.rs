//! The serving path's errors, typed end to end: the server maps each variant to its HTTP status in one place.

use s2v_models::generator::InvalidTruncation;

/// A generation request that no generator can serve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("the latent must have {expected} values, has {found}")]
    LatentLength { expected: usize, found: usize },
    #[error("the latent must be finite and not all zeros")]
    LatentValues,
    #[error("count must be at least 1")]
    NoImages,
    #[error(transparent)]
    Truncation(#[from] InvalidTruncation),
    /// A control the served model does not have (a GAN's steps, a diffusion model's truncation).
    #[error("this model does not take {0}")]
    NotOffered(&'static str),
    #[error("{0}")]
    Steps(String),
    #[error("guidance must be a number between 0 and {0}")]
    Guidance(f32),
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the generation queue is full")]
    QueueFull,
    #[error("no generator worker is running")]
    Stopped,
    /// The broker cannot take the job.
    #[error("the broker {0}")]
    Broker(String),
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidRequest),
}

/// Why a queued generation ended before all of its images came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    /// The backend could not give the generator's output back.
    #[error("the generator failed: {0}")]
    Backend(String),
    /// A broker worker said it failed.
    #[error("the worker failed: {0}")]
    Worker(String),
    /// A broker worker sent something that is not an image of this job.
    #[error("a worker's answer is malformed: {0}")]
    Malformed(String),
    #[error("no worker answered for {0} s")]
    Silent(u64),
    #[error("the broker connection closed")]
    Disconnected,
    #[error("the generator worker stopped")]
    Stopped,
}
