//! The page end to end in a real browser: Debian's Chromium, driven by `tests/browser/e2e.mjs`
//! (playwright-core), against the real `s2v-server` serving the built page with the embedded default model.
//! Once on Chromium's software WebGPU adapter and once on the CPU path (on a thread per core, in the page the
//! server makes cross-origin isolated; on one thread where it does not, or where threads cannot start): uploading a sound, the browser's latent
//! against the server's native encoder, the pictures and the share link, an undecodable file, recording through
//! Chromium's fake microphone, the weights from the browser's cache on a second visit, and a busy server.
//!
//! Needs what `tests/setup` installs: Chromium, Node's `playwright-core`, and the built page (`dist/`).
//! Screenshots go to `$S2V_SCREENSHOTS` (else a folder in the temporary directory, printed).

use std::path::{Path, PathBuf};
use std::process::Command;

use s2v_tests::service::{Process, start_server};

mod support;

fn serve(data: &Path, page: &Path, extra: &[&str]) -> (Process, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s2v-server"));
    command
        .arg("--data-dir")
        .arg(data)
        .arg("--page")
        .arg(page)
        .args(extra);
    start_server(command)
}

fn screenshots() -> PathBuf {
    std::env::var_os("S2V_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("s2v-browser-screenshots"))
}

#[test]
fn the_page_works_on_webgpu_and_on_the_cpu() {
    let checkout = s2v_tests::checkout();
    let page = checkout.join("dist");
    assert!(
        page.join("index.html").is_file(),
        "the page is not built in {}: run tests/setup (or scripts/build-page)",
        page.display()
    );
    let script = checkout.join("tests/browser/e2e.mjs");
    assert!(
        checkout
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run tests/setup"
    );
    let data = tempfile::tempdir().unwrap();
    let busy_data = tempfile::tempdir().unwrap();
    let (_server, base) = serve(data.path(), &page, &[]);
    // One generation a minute: the second is refused with 429. Its page is not cross-origin isolated, so it
    // encodes on one thread.
    let (_busy, busy_base) = serve(
        busy_data.path(),
        &page,
        &[
            "--rate-burst",
            "1",
            "--rate-period-ms",
            "60000",
            "--no-cross-origin-isolation",
        ],
    );
    let sound = s2v_tests::fixture("tone_chirp_10s.wav");
    let shots = screenshots();
    for mode in ["webgpu", "cpu"] {
        let status = Command::new("node")
            .arg(&script)
            .args([mode, &base, &busy_base])
            .arg(&sound)
            .arg(&shots)
            .status()
            .expect(
                "node runs (tests/setup installs Node's packages; Node comes with the machine)",
            );
        assert!(
            status.success(),
            "the page failed in the browser on {mode} (its log is above; screenshots in {})",
            shots.display()
        );
    }
    eprintln!("screenshots in {}", shots.display());
}

#[test]
fn the_page_offers_a_diffusion_models_controls_and_shows_its_previews() {
    // Enough steps that previews arrive over a while: the tiny model denoises in milliseconds, and previews
    // that come in the same network chunk as their picture are never drawn.
    let checkout = s2v_tests::checkout();
    let page = checkout.join("dist");
    assert!(
        page.join("index.html").is_file(),
        "the page is not built: run tests/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let model = support::tiny_converted(dir.path());
    let (_server, base) = serve(
        &dir.path().join("data"),
        &page,
        &[
            "--unclip",
            model.to_str().unwrap(),
            "--device",
            "flex",
            "--steps",
            "60",
            "--preview-every",
            "1",
        ],
    );
    let shots = screenshots();
    let status = Command::new("node")
        .arg(checkout.join("tests/browser/diffusion.mjs"))
        .arg(&base)
        .arg(s2v_tests::fixture("tone_chirp_10s.wav"))
        .arg(&shots)
        .status()
        .expect("node runs (tests/setup installs Node's packages)");
    assert!(
        status.success(),
        "the diffusion page failed in the browser (its log is above; screenshots in {})",
        shots.display()
    );
}
