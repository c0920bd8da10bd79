//! The generator runtime: device selection, array files, and the commands of the `s2v` tool.

pub mod arrays;
pub mod commands;
pub mod device;
pub mod encoders;
pub mod pictures;
pub mod runtime;
