// The encoder worker with threads (see src/lib.rs): scripts/build-page copies this file to dist/threads/,
// beside the module wasm-bindgen writes. The page starts it as a module worker, only when it is
// cross-origin isolated; if anything here fails, the worker's error reaches the page, which then starts the
// worker without threads.
import init, { initThreadPool, start } from "./s2v_web_encoder_threads.js";

await init();
await initThreadPool(Math.max(1, navigator.hardwareConcurrency || 1));
start();
