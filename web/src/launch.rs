//! Which build of the encoder worker runs, and what follows when one crashes.
//!
//! trunk builds the worker with WebGPU and one CPU thread; `scripts/build-page` also builds it with threads
//! (`threads/encoder.js`, the CPU alone on a thread per core). Threads in wasm share memory, which a browser
//! allows only in a cross-origin-isolated page (the server sends the headers that make it one). Where WebGPU
//! has an adapter it goes first; then the CPU with threads where the page is isolated; then one CPU thread.

use wasm_bindgen::JsCast;

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
    let mut plan = Vec::with_capacity(3);
    let gpu_first = webgpu && !cpu_asked;
    if gpu_first {
        plan.push(Launch {
            build: WorkerBuild::Single,
            cpu_only: false,
        });
    }
    if isolated {
        // Without an adapter it still asks for WebGPU (unless told not to), so that it says why there is none.
        plan.push(Launch {
            build: WorkerBuild::Threaded,
            cpu_only: cpu_asked || gpu_first,
        });
    }
    // After a crash on WebGPU it stays off the GPU; otherwise it looks for an adapter again, to say why none.
    plan.push(Launch {
        build: WorkerBuild::Single,
        cpu_only: cpu_asked || gpu_first,
    });
    plan
}

/// Whether this page may share memory between threads (`crossOriginIsolated`).
pub fn cross_origin_isolated() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .is_ok_and(|value| value.as_bool() == Some(true))
}

/// Whether the browser offers this page a WebGPU adapter.
pub async fn webgpu_adapter() -> bool {
    let Ok(navigator) = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()) else {
        return false;
    };
    let Ok(gpu) = js_sys::Reflect::get(&navigator, &"gpu".into()) else {
        return false;
    };
    if gpu.is_undefined() || gpu.is_null() {
        return false;
    }
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(&gpu).ok())
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok());
    match request {
        Some(promise) => wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .is_ok_and(|adapter| !adapter.is_null() && !adapter.is_undefined()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(build: WorkerBuild, cpu_only: bool) -> Launch {
        Launch { build, cpu_only }
    }

    #[test]
    fn webgpu_goes_first_then_threads_then_one_thread() {
        assert_eq!(
            plan(false, true, true),
            [
                launch(WorkerBuild::Single, false),
                launch(WorkerBuild::Threaded, true),
                launch(WorkerBuild::Single, true),
            ]
        );
    }

    #[test]
    fn without_an_adapter_an_isolated_page_runs_threads() {
        assert_eq!(
            plan(false, false, true),
            [
                launch(WorkerBuild::Threaded, false),
                launch(WorkerBuild::Single, false),
            ]
        );
        assert_eq!(
            plan(true, true, true),
            [
                launch(WorkerBuild::Threaded, true),
                launch(WorkerBuild::Single, true),
            ]
        );
    }

    #[test]
    fn a_page_that_is_not_isolated_never_runs_threads() {
        for (cpu_asked, webgpu) in [(false, false), (false, true), (true, false), (true, true)] {
            let plan = plan(cpu_asked, webgpu, false);
            assert!(
                plan.iter().all(|l| l.build == WorkerBuild::Single),
                "{plan:?}"
            );
        }
        assert_eq!(
            plan(false, false, false),
            [launch(WorkerBuild::Single, false)]
        );
    }
}
