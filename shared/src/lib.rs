//! Code shared by the browser and the server: the audio front end.
//!
//! Pure Rust with no tensor library, so that it builds for `wasm32-unknown-unknown` as well as natively.

pub mod audio;
