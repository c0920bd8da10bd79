//! What every network offers the checkpoint code, and which network a file holds.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;

/// The three networks of the model. A plain enum, so that code which only needs to tell them apart (a
/// checkpoint's header, a command-line flag, the embedded files) names no backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkKind {
    AudioEncoder,
    ImageEncoder,
    Generator,
}

impl NetworkKind {
    pub const ALL: [Self; 3] = [Self::AudioEncoder, Self::ImageEncoder, Self::Generator];

    /// The human-readable name, also stored in native checkpoints to refuse loading one network as another.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AudioEncoder => "audio encoder",
            Self::ImageEncoder => "image encoder",
            Self::Generator => "generator",
        }
    }

    /// The kind whose [`NetworkKind::name`] this is.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What every network offers the checkpoint code: its configuration and random initialisation from one.
/// Import from PyTorch is apart ([`crate::checkpoint::FromTorch`], feature `torch`), so that the browser's
/// build needs no PyTorch reader.
pub trait NetworkModule<B: Backend>: Module<B> + Sized {
    type Config: Serialize + serde::de::DeserializeOwned;
    const KIND: NetworkKind;

    fn config(&self) -> Self::Config;
    fn init(config: &Self::Config, device: &B::Device) -> Result<Self, CheckpointError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_none() {
        for kind in NetworkKind::ALL {
            assert_eq!(NetworkKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(NetworkKind::from_name("discriminator"), None);
    }
}
