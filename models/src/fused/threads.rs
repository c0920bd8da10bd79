//! How the fused kernels share their work out: over rayon's threads natively, and in the browser when the wasm
//! was built with threads (the `atomics` target feature, which needs a cross-origin-isolated page and a thread
//! pool started by the page, see `web/encoder-threads`); on the calling thread alone otherwise.

#[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
mod pool {
    use rayon::prelude::*;

    /// Runs `run_tile` on each of `tiles` tiles: in parallel, one thread each, when there are enough tiles
    /// to keep every thread busy; otherwise one after the other, each with `gemm`'s own threads.
    pub fn parallel_tiles(tiles: usize, run_tile: impl Fn(usize, gemm::Parallelism) + Sync) {
        let threads = rayon::current_num_threads();
        if tiles >= 2 * threads {
            (0..tiles)
                .into_par_iter()
                .for_each(|tile| run_tile(tile, gemm::Parallelism::None));
        } else {
            (0..tiles).for_each(|tile| run_tile(tile, gemm::Parallelism::Rayon(threads)));
        }
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
    /// Runs `run_tile` on each of `tiles` tiles, one after the other.
    pub fn parallel_tiles(tiles: usize, run_tile: impl Fn(usize, gemm::Parallelism)) {
        (0..tiles).for_each(|tile| run_tile(tile, gemm::Parallelism::None));
    }

    /// Runs `run` on each `plane`-long chunk of `out` with its index.
    pub fn for_each_plane(out: &mut [f32], plane: usize, run: impl Fn((usize, &mut [f32]))) {
        out.chunks_mut(plane).enumerate().for_each(run);
    }
}

pub use pool::{for_each_plane, parallel_tiles};
