//! What the page and its encoder worker both ask the browser, in either context (a window or a worker).

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Whether the browser offers this context a WebGPU adapter; if not, why. The worker asks before burn does
/// (burn can report a missing adapter only by panicking, which would end the worker); the page asks to choose
/// which build of the worker to start.
pub async fn webgpu_adapter() -> Result<(), String> {
    let navigator =
        js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).map_err(describe)?;
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).map_err(describe)?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU".into());
    }
    let request: js_sys::Function = js_sys::Reflect::get(&gpu, &"requestAdapter".into())
        .map_err(describe)?
        .dyn_into()
        .map_err(describe)?;
    let promise: js_sys::Promise = request
        .call0(&gpu)
        .map_err(describe)?
        .dyn_into()
        .map_err(describe)?;
    let adapter = JsFuture::from(promise).await.map_err(describe)?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU offers no adapter here".into());
    }
    Ok(())
}

/// A JavaScript value thrown or rejected, as a person reads it: a string as it is, an error by its message,
/// anything else as JSON where it has one.
pub fn describe(value: impl AsRef<JsValue>) -> String {
    let value = value.as_ref();
    value
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(value, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .or_else(|| {
            js_sys::JSON::stringify(value)
                .ok()
                .and_then(|s| s.as_string())
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
