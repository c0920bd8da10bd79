//! Fetching the encoder's weights with progress. The server serves them under their version with an immutable
//! cache policy, so a second visit reads them from the browser's cache.

use js_sys::Uint8Array;
use s2v_shared::browser::describe;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    ReadableStreamDefaultReader, RequestCache, RequestInit, RequestMode, Response,
    WorkerGlobalScope,
};

/// The weights, and whether the browser's cache gave them.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub from_cache: bool,
}

/// Fetches `url`, calling `progress(loaded, total)` as bytes arrive: from the browser's cache where it holds the
/// weights, else from the network.
pub async fn fetch(
    url: &str,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched, String> {
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    // Asking the cache alone first tells for certain where the bytes came from (resource timing entries can
    // arrive after the body has been read).
    let (response, from_cache) = match cached_response(&scope, url).await {
        Some(cached) => (cached, true),
        None => (network_response(&scope, url).await?, false),
    };
    let bytes = read_body(&response, &mut progress).await?;
    Ok(Fetched { bytes, from_cache })
}

/// The server's answer for `url`, refused unless it is a success.
async fn network_response(scope: &WorkerGlobalScope, url: &str) -> Result<Response, String> {
    let response: Response = JsFuture::from(scope.fetch_with_str(url))
        .await
        .map_err(|e| format!("cannot fetch the weights: {}", describe(&e)))?
        .unchecked_into();
    if !response.ok() {
        return Err(format!(
            "the server answered {} for the weights",
            response.status()
        ));
    }
    Ok(response)
}

/// The browser's cached response for `url`, if it has one; never the network (`only-if-cached`, which browsers
/// allow for same-origin requests, fails instead).
async fn cached_response(scope: &WorkerGlobalScope, url: &str) -> Option<Response> {
    let init = RequestInit::new();
    init.set_cache(RequestCache::OnlyIfCached);
    init.set_mode(RequestMode::SameOrigin);
    let response: Response = JsFuture::from(scope.fetch_with_str_and_init(url, &init))
        .await
        .ok()?
        .unchecked_into();
    response.ok().then_some(response)
}

/// The response's body, calling `progress(loaded, total)` as it arrives.
async fn read_body(
    response: &Response,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<Vec<u8>, String> {
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|n| n.parse().ok());
    let body = response.body().ok_or("the weights' response has no body")?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("the weights' download broke: {}", describe(&e)))?;
        let done = js_sys::Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            return Ok(bytes);
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(|e| describe(&e))?
            .unchecked_into();
        bytes.extend(value.to_vec());
        progress(bytes.len() as u64, total);
    }
}
