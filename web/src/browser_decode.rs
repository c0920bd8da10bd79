//! The browser's own decoder, for what the project's decoder does not read (AAC in `.m4a`, Opus in `.webm`):
//! `decodeAudioData`, at the file's own rate, downmixed to mono.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AudioBuffer, AudioContext, AudioContextOptions};

/// Mono samples and their rate, or why the browser could not decode the file.
pub async fn decode(bytes: &[u8]) -> Result<(Vec<f32>, u32), String> {
    // A context at 48 kHz resamples whatever it decodes to 48 kHz: enough for the 16 kHz the network hears.
    let options = AudioContextOptions::new();
    options.set_sample_rate(48_000.0);
    let context = AudioContext::new_with_context_options(&options).map_err(|e| {
        format!(
            "this browser cannot decode audio: {}",
            crate::api::describe(&e)
        )
    })?;
    let buffer = js_sys::Uint8Array::from(bytes).buffer();
    let decoded = match context.decode_audio_data(&buffer) {
        Ok(promise) => JsFuture::from(promise).await,
        Err(e) => Err(e),
    };
    let _ = context.close();
    let audio: AudioBuffer = decoded
        .map_err(|_| "this file is not audio this browser can decode".to_string())?
        .unchecked_into();
    let channels = audio.number_of_channels();
    let mut mono = vec![0.0f32; audio.length() as usize];
    for channel in 0..channels {
        let samples = audio
            .get_channel_data(channel)
            .map_err(|e| crate::api::describe(&e))?;
        for (m, s) in mono.iter_mut().zip(samples) {
            *m += s / channels as f32;
        }
    }
    Ok((mono, audio.sample_rate() as u32))
}
