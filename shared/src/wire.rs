//! Types that cross the wire between the page, the server and the workers.

/// Length of the latent that the audio and image encoders produce and the generator is conditioned on.
pub const LATENT_DIM: usize = 2048;
