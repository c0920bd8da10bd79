//! Which build of the encoder worker runs, and what follows when one crashes.
//!
//! trunk builds the worker with WebGPU and one CPU thread; `scripts/build-page` also builds it with threads
//! (`threads/encoder.js`, the CPU alone on a thread per core). Threads in wasm share memory, which a browser
//! allows only in a cross-origin-isolated page (the server sends the headers that make it one). Where WebGPU
//! has an adapter it goes first; then the CPU with threads where the page is isolated; then one CPU thread.

/// A build of the encoder worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerBuild {
    /// trunk's build: WebGPU where there is an adapter, else the CPU on one thread.
    Single,
    /// The build with threads: the CPU on a thread per core.
    Threaded,
}

impl WorkerBuild {
    /// The module script that starts it, relative to the page.
    pub fn script(self) -> &'static str {
        match self {
            // Written by trunk beside the page (`data-type="worker"`, `data-loader-shim`).
            Self::Single => "./s2v-encoder_loader.js",
            // Written by `scripts/build-page` from `web/encoder-threads/encoder.js`.
            Self::Threaded => "./threads/encoder.js",
        }
    }
}

/// One way to run the encoder: a build, and whether it may try WebGPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub build: WorkerBuild,
    pub cpu_only: bool,
}

/// The ways to run the encoder, best first: a crash moves on to the next.
///
/// `cpu_asked`: the address asks for the CPU; `webgpu`: the page found an adapter; `isolated`: the page is
/// cross-origin isolated.
pub fn plan(cpu_asked: bool, webgpu: bool, isolated: bool) -> Vec<Launch> {
    let gpu_first = webgpu && !cpu_asked;
    // The CPU builds look for an adapter again (to say why there is none) unless the address said not to or
    // WebGPU went first and crashed.
    let cpu_only = cpu_asked || gpu_first;
    let gpu = gpu_first.then_some(Launch {
        build: WorkerBuild::Single,
        cpu_only: false,
    });
    let threaded = isolated.then_some(Launch {
        build: WorkerBuild::Threaded,
        cpu_only,
    });
    let single = Launch {
        build: WorkerBuild::Single,
        cpu_only,
    };
    gpu.into_iter().chain(threaded).chain([single]).collect()
}

/// Whether this page may share memory between threads (`crossOriginIsolated`).
pub fn cross_origin_isolated() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .is_ok_and(|value| value.as_bool() == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerBuild::{Single, Threaded};

    fn launch(build: WorkerBuild, cpu_only: bool) -> Launch {
        Launch { build, cpu_only }
    }

    #[test]
    fn webgpu_goes_first_then_threads_then_one_thread() {
        let cases = [
            // (cpu asked, adapter, isolated) -> the plan
            (
                (false, true, true),
                vec![
                    launch(Single, false),
                    launch(Threaded, true),
                    launch(Single, true),
                ],
            ),
            // Without an adapter (or told to keep off it), an isolated page runs threads.
            (
                (false, false, true),
                vec![launch(Threaded, false), launch(Single, false)],
            ),
            (
                (true, true, true),
                vec![launch(Threaded, true), launch(Single, true)],
            ),
            ((false, false, false), vec![launch(Single, false)]),
        ];
        for ((cpu_asked, webgpu, isolated), expected) in cases {
            assert_eq!(
                plan(cpu_asked, webgpu, isolated),
                expected,
                "cpu asked {cpu_asked}, adapter {webgpu}, isolated {isolated}"
            );
        }
    }

    #[test]
    fn a_page_that_is_not_isolated_never_runs_threads() {
        for (cpu_asked, webgpu) in [(false, false), (false, true), (true, false), (true, true)] {
            let plan = plan(cpu_asked, webgpu, false);
            assert!(plan.iter().all(|l| l.build == Single), "{plan:?}");
        }
    }
}
