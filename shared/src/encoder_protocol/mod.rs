//! What the page and its encoder worker say to each other. Each message is one of these (as a plain object,
//! tagged by `kind`), with its bulk data (a file's bytes, samples, a spectrogram) beside it as a transferable
//! typed array rather than inside it, so that seconds of audio cross without being copied or converted.

use serde::{Deserialize, Serialize};

#[cfg(feature = "browser")]
pub mod transport;

/// From the page to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderCommand {
    /// Fetch the audio encoder's weights (the project's safetensors format) and load them, on WebGPU unless
    /// `cpu_only` or the browser has no adapter.
    Load { weights_url: String, cpu_only: bool },
    /// Decode an audio file (its bytes beside) to mono 16 kHz, the first `max_seconds` of it.
    Decode {
        job: u32,
        extension: Option<String>,
        max_seconds: f64,
    },
    /// Bring mono samples at `sample_rate` (beside, `f32`), a recording, to 16 kHz.
    Resample { job: u32, sample_rate: u32 },
    /// The spectrogram of a 10 s, 16 kHz clip (beside, `f32`), and its latent when `latent`.
    Encode { job: u32, latent: bool },
}

/// From the worker to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderEvent {
    /// The worker listens: messages sent before this are lost.
    Ready,
    /// Bytes of the weights fetched so far; `total` when the server said.
    Progress { loaded: u64, total: Option<u64> },
    /// The encoder is ready on `backend`, after `seconds` (fetching included); `from_cache` when the browser had
    /// the weights already. `no_webgpu` says why the CPU runs where WebGPU was wanted; `threads` is how many
    /// threads the network runs on (more than one only in the build with threads, on the CPU).
    Loaded {
        backend: EncoderBackend,
        threads: u32,
        seconds: f64,
        from_cache: bool,
        no_webgpu: Option<String>,
    },
    /// The decoded sound: mono 16 kHz samples beside (`f32`).
    Decoded { job: u32 },
    /// The clip's log-spectrogram beside (`f32`, 257 x 1004, frequency-major), its latent when asked for, and
    /// how long the encoder took.
    Encoded {
        job: u32,
        latent: Option<Vec<f32>>,
        seconds: f64,
    },
    /// A command failed; `job` is `None` for loading.
    Failed {
        job: Option<u32>,
        error: EncoderFailure,
        message: String,
    },
}

/// Where the audio encoder runs in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderBackend {
    WebGpu,
    Cpu,
}

impl EncoderBackend {
    pub fn label(self) -> &'static str {
        match self {
            Self::WebGpu => "WebGPU",
            Self::Cpu => "the CPU",
        }
    }
}

/// What went wrong, as the page tells a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderFailure {
    /// The file is not audio the decoder reads.
    Undecodable,
    /// Nothing louder than silence.
    Silent,
    /// Under half a second.
    TooShort,
    /// The weights could not be fetched or do not load.
    Weights,
    /// A message the worker did not expect, or a failure of the backend.
    Internal,
}

impl From<&crate::audio::AudioError> for EncoderFailure {
    fn from(error: &crate::audio::AudioError) -> Self {
        use crate::audio::AudioError;
        match error {
            AudioError::Silent => Self::Silent,
            AudioError::TooShort { .. } => Self::TooShort,
            AudioError::EmptyInput
            | AudioError::UnsupportedFormat(_)
            | AudioError::Corrupt(_)
            | AudioError::Truncated { .. }
            | AudioError::NoSamples
            | AudioError::NonFinite
            | AudioError::InvalidSampleRate(_) => Self::Undecodable,
            AudioError::LengthMismatch(..)
            | AudioError::WrongLength { .. }
            | AudioError::Resample(_) => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_kind() {
        let command = EncoderCommand::Encode {
            job: 3,
            latent: true,
        };
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["kind"], "encode");
        assert_eq!(
            serde_json::from_value::<EncoderCommand>(json).unwrap(),
            command
        );
        let event = EncoderEvent::Loaded {
            backend: EncoderBackend::WebGpu,
            threads: 1,
            seconds: 1.5,
            from_cache: true,
            no_webgpu: None,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            (json["kind"].as_str(), json["backend"].as_str()),
            (Some("loaded"), Some("web-gpu"))
        );
    }
}
