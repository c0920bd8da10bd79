//! Code shared by the browser, the server and the workers: the audio front end and the wire types.
//!
//! Pure Rust with no tensor library, so that it builds for `wasm32-unknown-unknown` as well as natively.

pub mod audio;
pub mod wire;
