//! Decoding of WAV, FLAC, Ogg Vorbis and MP3 with symphonia, downmixed to mono.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AudioError;

/// Decoding stops after this many seconds of audio: the networks read the first 10 s, and a cap keeps a long or
/// hostile file from filling memory.
pub const MAX_DECODED_SECONDS: u64 = 30;

/// A decoded, downmixed waveform at its native sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples in [-1, 1] (the mean of the channels).
    pub samples: Vec<f64>,
    pub sample_rate: u32,
}

/// Decodes an audio file held in memory. `extension_hint` (e.g. `"wav"`) helps the probe but is not required.
pub fn decode_audio(
    bytes: &[u8],
    extension_hint: Option<&str>,
) -> Result<DecodedAudio, AudioError> {
    // Decoders of hostile input have had panics; where unwinding exists, one becomes an error, not a crash.
    std::panic::catch_unwind(|| decode_unguarded(bytes, extension_hint)).unwrap_or_else(|_| {
        Err(AudioError::Corrupt(
            "the decoder failed on malformed data".into(),
        ))
    })
}

fn decode_unguarded(
    bytes: &[u8],
    extension_hint: Option<&str>,
) -> Result<DecodedAudio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::EmptyInput);
    }
    let mut hint = Hint::new();
    if let Some(ext) = extension_hint {
        hint.with_extension(ext);
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => AudioError::UnsupportedFormat(what.to_string()),
            other => AudioError::UnsupportedFormat(other.to_string()),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::UnsupportedFormat("the file has no audio track".into()))?;
    let track_id = track.id;
    let declared_frames = track.codec_params.n_frames;
    let sample_rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| AudioError::Corrupt("the audio track declares no sample rate".into()))?;
    if sample_rate == 0 {
        return Err(AudioError::InvalidSampleRate(0));
    }
    let max_frames = MAX_DECODED_SECONDS * u64::from(sample_rate);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::UnsupportedFormat(e.to_string()))?;

    let mut samples = Vec::new();
    let mut interleaved: Option<SampleBuffer<f64>> = None;
    let mut capped = false;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| AudioError::Corrupt(e.to_string()))?;
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if channels == 0 {
            return Err(AudioError::Corrupt("a packet has no channels".into()));
        }
        let buffer = match &mut interleaved {
            Some(buffer) if buffer.capacity() >= decoded.capacity() * channels => buffer,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buffer.copy_interleaved_ref(decoded);
        samples.extend(
            buffer
                .samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f64>() / channels as f64),
        );
        if samples.len() as u64 >= max_frames {
            samples.truncate(max_frames as usize);
            capped = true;
            break;
        }
    }
    if samples.is_empty() {
        return Err(AudioError::NoSamples);
    }
    if let Some(declared) = declared_frames {
        let decoded = samples.len() as u64;
        if !capped && decoded < declared {
            return Err(AudioError::Truncated { declared, decoded });
        }
    }
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(AudioError::NonFinite);
    }
    Ok(DecodedAudio {
        samples,
        sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_support::wav_bytes;

    #[test]
    fn decodes_pcm16_exactly() {
        let decoded =
            decode_audio(&wav_bytes(&[0, 16384, -32768, 32767], 8000), Some("wav")).unwrap();
        assert_eq!(decoded.sample_rate, 8000);
        assert_eq!(decoded.samples, vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(matches!(
            decode_audio(&[], None),
            Err(AudioError::EmptyInput)
        ));
    }

    #[test]
    fn garbage_is_an_unsupported_format() {
        let err = decode_audio(b"this is not audio at all, just some text", None).unwrap_err();
        assert!(matches!(err, AudioError::UnsupportedFormat(_)), "{err}");
    }

    #[test]
    fn truncated_wav_is_reported() {
        let bytes = wav_bytes(&vec![1000; 4000], 16000);
        let err = decode_audio(&bytes[..bytes.len() - 3001], Some("wav")).unwrap_err();
        assert!(
            matches!(err, AudioError::Truncated { declared: 4000, .. }),
            "{err}"
        );
    }

    #[test]
    fn header_without_samples_is_an_error() {
        let err = decode_audio(&wav_bytes(&[], 16000), Some("wav")).unwrap_err();
        assert!(matches!(err, AudioError::NoSamples), "{err}");
    }
}
