use thiserror::Error;

/// A checkpoint that cannot become the network asked for. Every variant names the file or tensor at fault.
#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {message}")]
    Io { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error(
        "not a checkpoint: expected a PyTorch file (torch.save) or a sound2vision .safetensors file"
    )]
    UnknownFormat,
    #[error("cannot parse PyTorch checkpoint {path}: {message}")]
    Torch { path: String, message: String },
    #[error("cannot parse safetensors file {path}: {message}")]
    Safetensors { path: String, message: String },
    #[error("cannot parse sound2vision checkpoint: {0}")]
    Native(String),
    #[error("checkpoint has no tensor `{tensor}`: is it a checkpoint of the {network}?")]
    MissingTensor {
        network: &'static str,
        tensor: String,
    },
    #[error(
        "tensor `{tensor}` has shape {found:?} in the checkpoint, but the {network} needs {expected:?}"
    )]
    ShapeMismatch {
        network: &'static str,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{tensor}` holds non-finite values (NaN or infinity)")]
    NonFinite { tensor: String },
    #[error("tensor `{tensor}` cannot be read as float32: {message}")]
    BadData { tensor: String, message: String },
    #[error("the checkpoint has {} tensor(s) that the {network} does not use: {}", tensors.len(), tensors.join(", "))]
    UnexpectedTensors {
        network: &'static str,
        tensors: Vec<String>,
    },
    #[error("this checkpoint holds the {found}, not the {expected} asked for")]
    WrongNetwork {
        expected: &'static str,
        found: String,
    },
    #[error("invalid {network} configuration: {message}")]
    InvalidConfig {
        network: &'static str,
        message: String,
    },
}
