//! `s2v convert-unclip` and `s2v unclip` on the tiny Stable unCLIP fixtures (`tests/data/unclip`): a diffusers
//! folder converted, pictures drawn from embeddings and from sounds, seeded runs repeated exactly, and the
//! errors of inputs that do not fit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use s2v_tests::{checkout, fixture, read_values, tiny_unclip_folder};
use support::{TINY_WIDTH, save_tiny_sound2vision_encoder};

mod support;

fn s2v(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s2v"))
        .args(args)
        .output()
        .expect("s2v runs")
}

fn ok(args: &[&str]) -> String {
    let out = s2v(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "s2v {args:?} failed: {stderr}");
    stderr
}

fn fails(args: &[&str], needle: &str) {
    let out = s2v(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "s2v {args:?} should fail");
    assert!(
        !stderr.contains("panicked"),
        "s2v {args:?} panicked: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "s2v {args:?}: expected {needle:?} in {stderr}"
    );
}

/// `fails` for `base` followed by `extra`.
fn fails_with(base: &[&str], extra: &[&str], needle: &str) {
    let args: Vec<&str> = base.iter().chain(extra).copied().collect();
    fails(&args, needle);
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn data(part: &str) -> PathBuf {
    checkout().join("tests/data/unclip").join(part)
}

/// The tiny networks laid out as a diffusers Stable unCLIP folder, and a Sound2Vision-shaped audio encoder
/// with the tiny model's 6-d embedding.
fn tiny_model(root: &Path) -> (PathBuf, PathBuf) {
    let diffusers = tiny_unclip_folder(root);
    let encoder_path = root.join("sound2vision.safetensors");
    save_tiny_sound2vision_encoder(&encoder_path);
    (diffusers, encoder_path)
}

#[test]
fn a_converted_tiny_model_draws_from_embeddings_and_sounds() {
    let dir = tempfile::tempdir().unwrap();
    let (diffusers, encoder) = tiny_model(dir.path());
    let model = dir.path().join("converted");
    let said = ok(&[
        "convert-unclip",
        "--diffusers",
        s(&diffusers),
        "--audio-encoder",
        s(&encoder),
        "--out",
        s(&model),
    ]);
    assert!(
        said.contains(&format!("{TINY_WIDTH}-d embeddings")),
        "{said}"
    );

    let embedding = data("pipeline/embedding.npy");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "unclip",
            "--model",
            s(&model),
            "--steps",
            "3",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let first = dir.path().join("first.npy");
    let said = run(&first, &["--embedding", s(&embedding), "--seed", "7"]);
    assert!(said.contains("step 4 of 4"), "{said}");
    let pixels = read_values(&first);
    assert_eq!(pixels.len(), 3 * 16 * 16);
    assert!(pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    // The same seed draws the same picture; another seed another one.
    let again = dir.path().join("again.npy");
    run(&again, &["--embedding", s(&embedding), "--seed", "7"]);
    assert_eq!(read_values(&again), pixels);
    let other = dir.path().join("other.npy");
    run(
        &other,
        &[
            "--embedding",
            s(&embedding),
            "--seed",
            "8",
            "--scheduler",
            "dpm",
        ],
    );
    assert_ne!(read_values(&other), pixels);
    // Given latents and noise replace the seeded ones.
    let given = dir.path().join("given.npy");
    let (latents, noise) = (
        data("pipeline/latents.npy"),
        data("pipeline/image_noise.npy"),
    );
    run(
        &given,
        &[
            "--embedding",
            s(&embedding),
            "--latents",
            s(&latents),
            "--image-noise",
            s(&noise),
        ],
    );
    assert_ne!(read_values(&given), pixels);

    // Two sounds through the model's audio encoder, written as PNG files.
    let pngs = dir.path().join("pictures");
    let (a, b) = (fixture("tone_chirp_10s.wav"), fixture("clicks_160125.wav"));
    run(&pngs, &["--audio", s(&a), s(&b), "--size", "16"]);
    for name in ["000.png", "001.png"] {
        let picture = image::open(pngs.join(name)).unwrap();
        assert_eq!((picture.width(), picture.height()), (16, 16));
    }
}

#[test]
fn inputs_that_do_not_fit_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (diffusers, encoder) = tiny_model(dir.path());
    let model = dir.path().join("converted");
    ok(&[
        "convert-unclip",
        "--diffusers",
        s(&diffusers),
        "--audio-encoder",
        s(&encoder),
        "--out",
        s(&model),
    ]);
    let out = dir.path().join("x.npy");
    let base = [
        "unclip",
        "--model",
        s(&model),
        "--steps",
        "2",
        "--out",
        s(&out),
    ];
    fails(&base, "--embedding");
    let wrong = dir.path().join("wrong.npy");
    std::fs::copy(data("pipeline/latents.npy"), &wrong).unwrap();
    fails_with(
        &base,
        &["--embedding", s(&wrong)],
        &format!("the embeddings must be N x {TINY_WIDTH}"),
    );
    let embedding = data("pipeline/embedding.npy");
    fails_with(
        &base,
        &["--embedding", s(&embedding), "--latents", s(&embedding)],
        "the latents must be",
    );
    fails_with(
        &base,
        &["--embedding", s(&embedding), "--size", "20"],
        "multiple of 16",
    );
    fails_with(
        &base,
        &["--embedding", s(&embedding), "--noise-level", "1000"],
        "noise level 1000",
    );
    // A UNet over the CPU limit is refused with a measured estimate, unless forced.
    let limit = [
        "--embedding",
        s(&embedding),
        "--cpu-parameter-limit",
        "1000",
    ];
    fails_with(&base, &limit, "pass --force to run it here anyway");
    let forced: Vec<&str> = base
        .iter()
        .chain(&limit)
        .chain(&["--force"])
        .copied()
        .collect();
    ok(&forced);
    let corrupt = dir.path().join("corrupt.wav");
    std::fs::write(&corrupt, b"RIFF nonsense").unwrap();
    fails_with(&base, &["--audio", s(&corrupt)], "corrupt.wav");
    fails(
        &[
            "unclip",
            "--model",
            s(dir.path()),
            "--embedding",
            s(&embedding),
            "--out",
            s(&out),
        ],
        "unclip.json",
    );
}
