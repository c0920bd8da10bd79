//! The encoder worker with threads: the same worker as `s2v-web-encoder`'s (`run`), on the CPU, with rayon's
//! pool on Web Workers sharing this module's memory. `encoder.js` starts it: it loads the module, starts the
//! pool (`initThreadPool`), then calls [`start`]. The pool's workers load the same module, so the worker's
//! loop is not a start function (which every one of them would run) but this export.

#![cfg(target_family = "wasm")]

use wasm_bindgen::prelude::wasm_bindgen;
pub use wasm_bindgen_rayon::init_thread_pool;

/// Starts the worker's message loop; call it once the thread pool is up.
#[wasm_bindgen]
pub fn start() {
    s2v_web_encoder::run();
}
