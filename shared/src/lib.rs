//! Code shared by the browser, the server and the workers: the audio front end, the wire types of the API and
//! the broker, and what the page and its encoder worker say to each other.
//!
//! Pure Rust with no tensor library, so that it builds for `wasm32-unknown-unknown` as well as natively.

pub mod audio;
#[cfg(feature = "browser")]
pub mod browser;
pub mod encoder_protocol;
pub mod wire;
