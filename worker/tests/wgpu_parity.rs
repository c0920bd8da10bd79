//! The `s2v` tool on the wgpu backend (in CI: Mesa's software Vulkan, lavapipe) reproduces the reference.
//! Needs the `wgpu` feature: `cargo test -p s2v-worker --features wgpu --test wgpu_parity`.

use std::process::Command;

use s2v_tests::*;

#[test]
fn wgpu_backend_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_s2v"))
            .arg("--device")
            .arg("wgpu")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "s2v {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let read = |name: &str| read_values(&dir.path().join(name));
    let fx = |name: &str| fixture(name).to_str().unwrap().to_string();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    run(&[
        "generate",
        "--checkpoint",
        &fx("generator.pth"),
        "--features",
        &fx("generator_features.npy"),
        "--noise",
        &fx("generator_noise.npy"),
        "--out",
        &out("g.npy"),
    ]);
    let err = max_abs_diff(
        &read("g.npy"),
        npy("generator_output.npy").as_slice().unwrap(),
    );
    assert!(err < 2e-3, "generator on wgpu: max abs error {err}");

    run(&[
        "encode-audio",
        "--checkpoint",
        &fx("audio_encoder.pth"),
        &fx("harmonic_3p7s.wav"),
        "--out",
        &out("a.npy"),
    ]);
    let err = relative_error(
        &read("a.npy"),
        npy("harmonic_3p7s.audio_embedding.npy").as_slice().unwrap(),
    );
    assert!(err < 1e-3, "audio encoder on wgpu: relative error {err}");

    run(&[
        "encode-image",
        "--checkpoint",
        &fx("image_encoder.pth.tar"),
        "--input",
        &fx("image_input.npy"),
        "--out",
        &out("i.npy"),
    ]);
    let err = relative_error(
        &read("i.npy"),
        npy("image_features.npy").as_slice().unwrap(),
    );
    assert!(err < 1e-3, "image encoder on wgpu: relative error {err}");
}

#[test]
fn auto_takes_wgpu_only_on_a_hardware_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.npy");
    let output = Command::new(env!("CARGO_BIN_EXE_s2v"))
        .env("RUST_LOG", "info")
        .args([
            "--device",
            "auto",
            "generate",
            "--checkpoint",
            fixture("generator.pth").to_str().unwrap(),
        ])
        .args([
            "--features",
            fixture("generator_features.npy").to_str().unwrap(),
        ])
        .args([
            "--noise",
            fixture("generator_noise.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = String::from_utf8_lossy(&output.stderr);
    // Mesa's lavapipe (CI, this machine) is a CPU adapter: auto must not take it.
    let expected = match s2v_serving::device::hardware_gpu_adapter() {
        Some(_) => "device=Wgpu",
        None => "device=Flex",
    };
    assert!(log.contains(expected), "expected {expected} in {log}");
}
