//! Messages as they cross between the page and its encoder worker: `{message, data}`, where `message` is the
//! serde form of a protocol enum and `data` an optional typed array, handed over (transferred) rather than
//! copied.

use js_sys::{Array, Object, Reflect};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};

/// A message and the bulk data beside it.
pub struct Envelope<T> {
    pub message: T,
    pub data: Option<JsValue>,
}

/// The object to post, and the list of buffers to transfer with it.
pub fn seal<T: Serialize>(message: &T, data: Option<&JsValue>) -> Result<(JsValue, Array), String> {
    let object = Object::new();
    let message = serde_wasm_bindgen::to_value(message).map_err(|e| e.to_string())?;
    let set = |key: &str, value: &JsValue| {
        Reflect::set(&object, &key.into(), value).map_err(|e| format!("{e:?}"))
    };
    set("message", &message)?;
    let transfer = Array::new();
    if let Some(data) = data {
        set("data", data)?;
        if let Ok(buffer) = Reflect::get(data, &"buffer".into())
            && buffer.is_instance_of::<js_sys::ArrayBuffer>()
        {
            transfer.push(&buffer);
        }
    }
    Ok((object.into(), transfer))
}

/// The message and data of a posted object.
pub fn open<T: DeserializeOwned>(posted: &JsValue) -> Result<Envelope<T>, String> {
    let message = Reflect::get(posted, &"message".into()).map_err(|e| format!("{e:?}"))?;
    let message = serde_wasm_bindgen::from_value(message).map_err(|e| e.to_string())?;
    let data = Reflect::get(posted, &"data".into())
        .ok()
        .filter(|d| !d.is_undefined() && !d.is_null());
    Ok(Envelope { message, data })
}

/// `f32` samples as a typed array to send.
pub fn float_array(values: &[f32]) -> JsValue {
    js_sys::Float32Array::from(values).into()
}

/// Bytes as a typed array to send.
pub fn bytes_array(bytes: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(bytes).into()
}

/// The `f32` values of a typed array that arrived.
pub fn floats(data: Option<&JsValue>) -> Result<Vec<f32>, String> {
    data.and_then(|d| d.dyn_ref::<js_sys::Float32Array>())
        .map(js_sys::Float32Array::to_vec)
        .ok_or_else(|| "the message carries no samples".to_string())
}

/// The bytes of a typed array that arrived.
pub fn bytes(data: Option<&JsValue>) -> Result<Vec<u8>, String> {
    data.and_then(|d| d.dyn_ref::<js_sys::Uint8Array>())
        .map(js_sys::Uint8Array::to_vec)
        .ok_or_else(|| "the message carries no bytes".to_string())
}
