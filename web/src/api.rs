//! The server's API as the page calls it: the model, the encoders, and generations streamed as server-sent
//! events.

use s2v_shared::wire::{
    DONE_EVENT, DoneEvent, ERROR_EVENT, ErrorBody, GenerateRequest, IMAGE_EVENT, ImageEvent,
    LatentBody, PREVIEW_EVENT, PreviewEvent, ServedModel,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, Request, RequestInit, Response};

use crate::sse::EventParser;

/// Why a call did not give its answer, as a person can act on it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiFailure {
    /// The server is busy (429): try again after this many seconds.
    Busy { retry_after: u64, detail: String },
    /// No answer at all, or the server is down.
    Unreachable(String),
    /// The server refused the request and said why.
    Refused { error: String, detail: String },
    /// The caller gave up (a newer request replaced this one).
    Aborted,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Busy { detail, .. } => write!(f, "the server is busy: {detail}"),
            Self::Unreachable(why) => write!(f, "the server cannot be reached: {why}"),
            Self::Refused { detail, .. } => f.write_str(detail),
            Self::Aborted => f.write_str("replaced by a newer request"),
        }
    }
}

/// What a generation streams back.
pub enum Streamed {
    /// A diffusion model's picture as it takes shape.
    Preview(PreviewEvent),
    Image(ImageEvent),
    Done(DoneEvent),
}

pub async fn served_model() -> Result<ServedModel, ApiFailure> {
    let response = send("GET", "/api/model", None, None, None).await?;
    json(response).await
}

/// A picture's feature, computed on the server.
pub async fn encode_image(bytes: &[u8], content_type: &str) -> Result<Vec<f32>, ApiFailure> {
    let response = send(
        "POST",
        "/api/encode-image",
        Some((bytes, content_type)),
        None,
        None,
    )
    .await?;
    Ok(json::<LatentBody>(response).await?.latent)
}

/// A sound's latent, computed on the server (only where the visitor chose it, or the browser cannot).
pub async fn encode_audio(wav: &[u8]) -> Result<Vec<f32>, ApiFailure> {
    let response = send(
        "POST",
        "/api/encode-audio",
        Some((wav, "audio/wav")),
        None,
        None,
    )
    .await?;
    Ok(json::<LatentBody>(response).await?.latent)
}

/// Starts a generation and hands each event to `on_event` as it arrives.
pub async fn generate(
    request: &GenerateRequest,
    signal: &AbortSignal,
    mut on_event: impl FnMut(Streamed),
) -> Result<(), ApiFailure> {
    let body = serde_json::to_vec(request).map_err(|e| ApiFailure::Refused {
        error: "bad_request".into(),
        detail: e.to_string(),
    })?;
    let response = send(
        "POST",
        "/api/generate",
        Some((&body, "application/json")),
        Some("text/event-stream"),
        Some(signal),
    )
    .await?;
    let body = response
        .body()
        .ok_or_else(|| ApiFailure::Unreachable("the answer has no body".into()))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let decoder = Utf8Stream::default();
    let mut parser = EventParser::default();
    let mut decoder = decoder;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| failure_of(&e, signal))?;
        if js_sys::Reflect::get(&chunk, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            return Err(ApiFailure::Unreachable(
                "the stream ended before the generation finished".into(),
            ));
        }
        let bytes = js_sys::Uint8Array::new(
            &js_sys::Reflect::get(&chunk, &"value".into()).unwrap_or(JsValue::UNDEFINED),
        )
        .to_vec();
        for event in parser.push(&decoder.push(&bytes)) {
            match event.name.as_str() {
                PREVIEW_EVENT => on_event(Streamed::Preview(parse(&event.data)?)),
                IMAGE_EVENT => on_event(Streamed::Image(parse(&event.data)?)),
                DONE_EVENT => {
                    on_event(Streamed::Done(parse(&event.data)?));
                    return Ok(());
                }
                ERROR_EVENT => {
                    let error: ErrorBody = parse(&event.data)?;
                    return Err(ApiFailure::Refused {
                        error: error.error,
                        detail: error.detail,
                    });
                }
                _ => {}
            }
        }
    }
}

/// Text from a byte stream whose chunks may split a character.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, ApiFailure> {
    serde_json::from_str(data)
        .map_err(|e| ApiFailure::Unreachable(format!("the server sent something unreadable: {e}")))
}

async fn send(
    method: &str,
    url: &str,
    body: Option<(&[u8], &str)>,
    accept: Option<&str>,
    signal: Option<&AbortSignal>,
) -> Result<Response, ApiFailure> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| ApiFailure::Unreachable(describe(&e)))?;
    if let Some((bytes, content_type)) = body {
        let _ = headers.set("content-type", content_type);
        init.set_body(&js_sys::Uint8Array::from(bytes));
    }
    if let Some(accept) = accept {
        let _ = headers.set("accept", accept);
    }
    init.set_headers(&headers);
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    let request = Request::new_with_str_and_init(url, &init)
        .map_err(|e| ApiFailure::Unreachable(describe(&e)))?;
    let window = web_sys::window().ok_or_else(|| ApiFailure::Unreachable("no window".into()))?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|e| match signal {
            Some(signal) => failure_of(&e, signal),
            None => ApiFailure::Unreachable(describe(&e)),
        })?
        .unchecked_into();
    if response.ok() {
        return Ok(response);
    }
    Err(refusal(response).await)
}

/// The failure a non-2xx answer describes.
async fn refusal(response: Response) -> ApiFailure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .ok()
        .flatten()
        .and_then(|s| s.trim().parse().ok());
    let body: Option<ErrorBody> = match response.text() {
        Ok(text) => JsFuture::from(text)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .and_then(|t| serde_json::from_str(&t).ok()),
        Err(_) => None,
    };
    let detail = body
        .as_ref()
        .map_or_else(|| format!("HTTP {status}"), |b| b.detail.clone());
    match (status, body) {
        (429, _) => ApiFailure::Busy {
            retry_after: retry_after.unwrap_or(1),
            detail,
        },
        (502..=504, _) | (_, None) => ApiFailure::Unreachable(detail),
        (_, Some(body)) => ApiFailure::Refused {
            error: body.error,
            detail,
        },
    }
}

async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ApiFailure> {
    let text = JsFuture::from(
        response
            .text()
            .map_err(|e| ApiFailure::Unreachable(describe(&e)))?,
    )
    .await
    .map_err(|e| ApiFailure::Unreachable(describe(&e)))?;
    parse(&text.as_string().unwrap_or_default())
}

fn failure_of(error: &JsValue, signal: &AbortSignal) -> ApiFailure {
    if signal.aborted() {
        ApiFailure::Aborted
    } else {
        ApiFailure::Unreachable(describe(error))
    }
}

pub use s2v_shared::browser::describe;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_chunks_arrives_whole() {
        let text = "événement: ok";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut stream = Utf8Stream::default();
            let joined = stream.push(&bytes[..cut]) + &stream.push(&bytes[cut..]);
            assert_eq!(joined, text, "cut at {cut}");
        }
    }
}
