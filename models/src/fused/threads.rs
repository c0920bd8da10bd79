//! How the fused kernels share their work out: over rayon's threads natively, and in the browser when the wasm
//! was built with threads (the `atomics` target feature, which needs a cross-origin-isolated page and a thread
//! pool started by the page, see `web/encoder-threads`); on the calling thread alone otherwise.

#[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
mod pool {
    use rayon::prelude::*;

    /// How many threads the work is shared among.
    pub fn threads() -> usize {
        rayon::current_num_threads()
    }

    /// `gemm` on every thread.
    pub fn gemm_on_all_threads() -> gemm::Parallelism {
        gemm::Parallelism::Rayon(threads())
    }

    /// Runs `run_part` on each of `parts` parts, in parallel.
    pub fn parallel_parts(parts: usize, run_part: impl Fn(usize) + Sync + Send) {
        (0..parts).into_par_iter().for_each(run_part);
    }

    /// Runs `run` on each `plane`-long chunk of `out` with its index, in parallel.
    pub fn for_each_plane(
        out: &mut [f32],
        plane: usize,
        run: impl Fn((usize, &mut [f32])) + Send + Sync,
    ) {
        out.par_chunks_mut(plane).enumerate().for_each(run);
    }
}

#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
mod pool {
    /// One thread: the page was not built with threads.
    pub fn threads() -> usize {
        1
    }

    /// `gemm` on this thread, the only one.
    pub fn gemm_on_all_threads() -> gemm::Parallelism {
        gemm::Parallelism::None
    }

    /// Runs `run_part` on each of `parts` parts, one after the other.
    pub fn parallel_parts(parts: usize, run_part: impl Fn(usize)) {
        (0..parts).for_each(run_part);
    }

    /// Runs `run` on each `plane`-long chunk of `out` with its index.
    pub fn for_each_plane(out: &mut [f32], plane: usize, run: impl Fn((usize, &mut [f32]))) {
        out.chunks_mut(plane).enumerate().for_each(run);
    }
}

pub use pool::{for_each_plane, gemm_on_all_threads, parallel_parts, threads};
