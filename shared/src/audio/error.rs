use thiserror::Error;

/// Everything that can be wrong with an audio input. Every variant says what to do about it.
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("the audio input is empty (0 bytes)")]
    EmptyInput,
    #[error(
        "unsupported or unrecognised audio format: {0} (WAV, FLAC, Ogg Vorbis and MP3 are supported)"
    )]
    UnsupportedFormat(String),
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    #[error(
        "truncated audio: the header declares {declared} frames but only {decoded} could be decoded"
    )]
    Truncated { declared: u64, decoded: u64 },
    #[error("the audio contains no samples")]
    NoSamples,
    #[error("the audio contains non-finite samples (NaN or infinity)")]
    NonFinite,
    #[error("unsupported sample rate {0} Hz (1 kHz to 768 kHz are supported)")]
    InvalidSampleRate(u32),
    #[error("waveforms to mix have different lengths ({0} and {1} samples)")]
    LengthMismatch(usize, usize),
    #[error("a spectrogram needs {expected} samples, got {actual}")]
    WrongLength { expected: usize, actual: usize },
    #[error("resampling failed: {0}")]
    Resample(String),
    #[error("the sound is silent: nothing louder than -50 dBFS")]
    Silent,
    #[error("the sound is too short ({seconds:.2} s): give at least half a second")]
    TooShort { seconds: f64 },
}
