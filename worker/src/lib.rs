//! The `s2v` command-line tool: what each subcommand does ([`commands`]) and the `.npy` files it reads and
//! writes ([`arrays`]). Serving and training live in `s2v-serving` and `s2v-train`; this crate is the layer
//! on top of both.

pub mod arrays;
pub mod bench;
pub mod commands;
pub mod unclip;
pub mod weights;
