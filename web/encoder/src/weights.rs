//! Fetching the encoder's weights with progress. The server serves them under their version with an immutable
//! cache policy, so a second visit reads them from the browser's cache.

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Response, WorkerGlobalScope};

/// The weights, and whether the browser's cache gave them.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub from_cache: bool,
}

/// Fetches `url`, calling `progress(loaded, total)` as bytes arrive.
pub async fn fetch(
    url: &str,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched, String> {
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
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
            break;
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(|e| describe(&e))?
            .unchecked_into();
        bytes.extend(value.to_vec());
        progress(bytes.len() as u64, total);
    }
    Ok(Fetched {
        from_cache: served_from_cache(&scope, url),
        bytes,
    })
}

/// Whether the browser's cache answered: its resource timing then transferred nothing over the network.
fn served_from_cache(scope: &WorkerGlobalScope, url: &str) -> bool {
    let Some(performance) = scope.performance() else {
        return false;
    };
    let absolute = web_sys::Url::new_with_base(url, &scope.location().href())
        .map(|u| u.href())
        .unwrap_or_else(|_| url.to_string());
    performance
        .get_entries_by_name(&absolute)
        .iter()
        .filter_map(|entry| entry.dyn_into::<web_sys::PerformanceResourceTiming>().ok())
        .next_back()
        .is_some_and(|timing| timing.transfer_size() == 0.0 && timing.decoded_body_size() > 0.0)
}

pub fn describe(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(value, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
