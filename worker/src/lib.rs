//! The generator runtime: device selection, array files, and the commands of the `s2v` tool.

pub mod arrays;
pub mod broker;
pub mod commands;
pub mod dataset;
pub mod device;
pub mod encoders;
pub mod eval;
pub mod pictures;
pub mod runtime;
pub mod train;
