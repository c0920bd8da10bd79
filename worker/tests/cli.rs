//! The `s2v` command-line tool against the reference fixtures, and its errors on bad input.
//! (Declared by the s2v-worker package, which owns the binary.)

use std::path::Path;
use std::process::{Command, Output};

use s2v_tests::*;

fn s2v(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s2v"))
        .args(args)
        .output()
        .expect("s2v runs")
}

fn ok(args: &[&str]) {
    let out = s2v(args);
    assert!(
        out.status.success(),
        "s2v {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A failing run: non-zero exit, an `error:` line that mentions `needle`, and no panic.
fn fails(args: &[&str], needle: &str) {
    let out = s2v(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "s2v {args:?} should fail");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "s2v {args:?} panicked: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "s2v {args:?}: expected {needle:?} in {stderr}"
    );
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn reproduces_the_reference_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let fx = |name: &str| fixture(name).to_str().unwrap().to_string();

    for wave in WAVES {
        ok(&[
            "spectrogram",
            &fx(&format!("{wave}.wav")),
            "--out",
            s(&out("spec.npy")),
        ]);
        let err = max_abs_diff(
            &read_values(&out("spec.npy")),
            npy(&format!("{wave}.spectrogram.npy")).as_slice().unwrap(),
        );
        assert!(err < 1e-3, "{wave} spectrogram {err}");
    }

    let waves: Vec<String> = WAVES.iter().map(|w| fx(&format!("{w}.wav"))).collect();
    let mut args = vec!["encode-audio", "--checkpoint"];
    let ckpt = fx("audio_encoder.pth");
    args.push(&ckpt);
    args.extend(waves.iter().map(String::as_str));
    let emb = out("emb.npy");
    args.extend(["--out", s(&emb)]);
    ok(&args);
    let embeddings = read_values(&out("emb.npy"));
    for (i, wave) in WAVES.iter().enumerate() {
        let err = relative_error(
            &embeddings[i * 2048..(i + 1) * 2048],
            npy(&format!("{wave}.audio_embedding.npy"))
                .as_slice()
                .unwrap(),
        );
        assert!(err < 1e-3, "{wave} embedding {err}");
    }

    ok(&[
        "encode-image",
        "--checkpoint",
        &fx("image_encoder.pth.tar"),
        "--input",
        &fx("image_input.npy"),
        "--out",
        s(&out("feat.npy")),
    ]);
    let err = relative_error(
        &read_values(&out("feat.npy")),
        npy("image_features.npy").as_slice().unwrap(),
    );
    assert!(err < 1e-3, "image features {err}");

    let generate = |checkpoint: &str, to: &str| {
        ok(&[
            "generate",
            "--checkpoint",
            checkpoint,
            "--features",
            &fx("generator_features.npy"),
            "--noise",
            &fx("generator_noise.npy"),
            "--out",
            to,
        ]);
    };
    generate(&fx("generator.pth"), s(&out("gen.npy")));
    let err = max_abs_diff(
        &read_values(&out("gen.npy")),
        npy("generator_output.npy").as_slice().unwrap(),
    );
    assert!(err < 2e-3, "generator {err}");

    // Converted to the own format, the generator gives the same images.
    ok(&[
        "convert",
        "--in",
        &fx("generator.pth"),
        "--out",
        s(&out("g.safetensors")),
    ]);
    generate(s(&out("g.safetensors")), s(&out("gen2.npy")));
    assert_eq!(
        max_abs_diff(
            &read_values(&out("gen.npy")),
            &read_values(&out("gen2.npy"))
        ),
        0.0
    );
}

#[test]
fn writes_png_files_from_seeded_noise() {
    let dir = tempfile::tempdir().unwrap();
    let pngs = dir.path().join("pngs");
    let features = fixture("generator_features.npy");
    let checkpoint = fixture("generator.pth");
    let args = [
        "generate",
        "--checkpoint",
        s(&checkpoint),
        "--features",
        s(&features),
        "--seed",
        "7",
        "--count",
        "2",
        "--truncation",
        "0.7",
        "--out",
        s(&pngs),
    ];
    ok(&args);
    let mut files: Vec<_> = std::fs::read_dir(&pngs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "000.png", "001.png", "002.png", "003.png", "004.png", "005.png"
        ]
    );
    let first = std::fs::read(pngs.join("000.png")).unwrap();
    assert_eq!(&first[1..4], b"PNG");
    // Same seed, same images.
    let again = dir.path().join("again");
    let mut args2 = args;
    args2[args2.len() - 1] = s(&again);
    ok(&args2);
    assert_eq!(
        std::fs::read(again.join("003.png")).unwrap(),
        std::fs::read(pngs.join("003.png")).unwrap()
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let out = path("out.npy");

    std::fs::write(path("empty.wav"), b"").unwrap();
    fails(
        &["spectrogram", s(&path("empty.wav")), "--out", s(&out)],
        "empty",
    );

    std::fs::write(
        path("noise.mp3"),
        b"this is not an mp3 at all, only text pretending to be one",
    )
    .unwrap();
    fails(
        &["spectrogram", s(&path("noise.mp3")), "--out", s(&out)],
        "format",
    );

    let wav = std::fs::read(fixture("tone_chirp_10s.wav")).unwrap();
    std::fs::write(path("cut.wav"), &wav[..wav.len() / 3]).unwrap();
    fails(
        &["spectrogram", s(&path("cut.wav")), "--out", s(&out)],
        "truncated",
    );

    fails(
        &["spectrogram", s(&path("missing.wav")), "--out", s(&out)],
        "missing.wav",
    );

    // `s2v train` on a data folder and a run folder, with these options, fails naming `needle`.
    let train_fails = |options: &[&str], needle: &str| {
        let data = path("data");
        let run = path("run");
        let mut args = vec!["train", "--data", s(&data), "--out", s(&run)];
        args.extend_from_slice(options);
        fails(&args, needle);
    };
    // A given image encoder leaves stage (a) nothing to train.
    let encoder = path("encoder.safetensors");
    train_fails(
        &["--image-encoder", s(&encoder), "--only", "image-encoder"],
        "nothing to do",
    );
    train_fails(&["--gan-reconstruction", "NaN"], "at least 0");
    train_fails(&["--gan-rates", "1e-4", "0"], "learning rate above 0");
    train_fails(&["--gan-augment", "cutout"], "color-translation-cutout");
    train_fails(&["--discriminator-steps", "0"], "1..=16");
    train_fails(&["--image-label-pairs", "1.5"], "from 0 to 1");
    train_fails(&["--discriminator-ch", "0"], "1..=256");

    // A checkpoint of another network names the tensor it lacks.
    fails(
        &[
            "encode-audio",
            "--checkpoint",
            s(&fixture("generator.pth")),
            s(&fixture("harmonic_3p7s.wav")),
            "--out",
            s(&out),
        ],
        "conv1.weight",
    );
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&fixture("audio_encoder.pth")),
            "--features",
            s(&fixture("generator_features.npy")),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "shared_feat.weight",
    );
    std::fs::write(path("junk.pth"), b"junk").unwrap();
    fails(
        &[
            "encode-image",
            "--checkpoint",
            s(&path("junk.pth")),
            "--input",
            s(&fixture("image_input.npy")),
            "--out",
            s(&out),
        ],
        "not a checkpoint",
    );

    // Arrays of the wrong shape.
    let generator = fixture("generator.pth");
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&fixture("image_input.npy")),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "[2, 3, 224, 224]",
    );
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&fixture("generator_features.npy")),
            "--noise",
            s(&fixture("generator_features.npy")),
            "--out",
            s(&out),
        ],
        "noise must be N x 120",
    );
    fails(
        &[
            "encode-image",
            "--checkpoint",
            s(&fixture("image_encoder.pth.tar")),
            "--input",
            s(&fixture("generator_noise.npy")),
            "--out",
            s(&out),
        ],
        "N x 3 x 224 x 224",
    );
    let zeros = path("zeros.npy");
    ndarray_npy::write_npy(&zeros, &ndarray::Array2::<f32>::zeros((2, 2048))).unwrap();
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&zeros),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "zeros",
    );
    // A header that claims far more data than the file holds, and float64 data.
    let npy_file = |descr: &str, shape: &str, data_len: usize| {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        header.push_str(&" ".repeat(117 - header.len()));
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        bytes
    };
    std::fs::write(
        path("huge.npy"),
        npy_file("<f4", "(100000000000, 2048)", 64),
    )
    .unwrap();
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&path("huge.npy")),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "missing",
    );
    std::fs::write(path("f64.npy"), npy_file("<f8", "(2, 2048)", 8 * 4096)).unwrap();
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&path("f64.npy")),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "float32",
    );
    std::fs::write(path("bad.npy"), b"\x93NUMPY garbage").unwrap();
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&path("bad.npy")),
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
        "float32 .npy",
    );
    fails(
        &[
            "generate",
            "--checkpoint",
            s(&generator),
            "--features",
            s(&fixture("generator_features.npy")),
            "--seed",
            "1",
            "--truncation=-1",
            "--out",
            s(&out),
        ],
        "truncation",
    );
    // A kept split and a drawn one exclude each other; a split is kept only from a build that has one.
    fails(
        &[
            "data",
            "build-default",
            "--out",
            s(&out),
            "--split-from",
            s(dir.path()),
            "--test-every",
            "3",
        ],
        "cannot be used with",
    );
    fails(
        &[
            "data",
            "build-default",
            "--out",
            s(&path("data")),
            "--unpacked",
            s(dir.path()),
            "--split-from",
            s(&path("no_build")),
        ],
        "items.csv",
    );
}

#[test]
fn the_default_model_serves_when_no_checkpoint_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let latent = dir.path().join("latent.npy");
    ok(&[
        "encode-audio",
        s(&fixture("tone_chirp_10s.wav")),
        "--out",
        s(&latent),
    ]);
    let shape = |path: &Path| -> Vec<usize> {
        let array: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path).unwrap();
        array.shape().to_vec()
    };
    assert_eq!(shape(&latent), [1, 512], "the default model's 512-d latent");
    let feature = dir.path().join("feature.npy");
    let picture = dir.path().join("picture.png");
    image::RgbImage::from_pixel(80, 60, image::Rgb([200, 30, 30]))
        .save(&picture)
        .unwrap();
    ok(&["encode-image", s(&picture), "--out", s(&feature)]);
    assert_eq!(shape(&feature), [1, 512]);
    let pictures = dir.path().join("pictures");
    ok(&[
        "generate",
        "--features",
        s(&latent),
        "--seed",
        "3",
        "--count",
        "2",
        "--out",
        s(&pictures),
    ]);
    for name in ["000.png", "001.png"] {
        let png = image::open(pictures.join(name)).unwrap();
        assert_eq!((png.width(), png.height()), (64, 64));
    }
}

/// `s2v bench` times a published-size network and writes its output: the weights and inputs come from a fixed
/// seed, so two runs (on two devices, in the GPU script) compute on the same numbers.
#[test]
fn bench_reports_times_and_repeats_its_output() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let out_dir = dir.path().join(name);
        let out = s2v(&[
            "bench",
            "audio-encoder",
            "--batch",
            "1",
            "2",
            "--runs",
            "1",
            "--out",
            s(&out_dir),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON report per line"))
            .collect();
        assert_eq!(lines.len(), 2, "one report per batch size: {stdout}");
        for (line, batch) in lines.iter().zip([1, 2]) {
            assert_eq!(line["batch"], batch);
            assert_eq!(line["target"], "audio-encoder");
            for field in ["setup_s", "first_s", "median_s", "items_per_s"] {
                assert!(line[field].as_f64().unwrap() > 0.0, "{field} in {line}");
            }
        }
    }
    let first = read_values(&dir.path().join("a/audio-encoder-b2.npy"));
    let second = read_values(&dir.path().join("b/audio-encoder-b2.npy"));
    assert_eq!(first.len(), 2 * 2048);
    assert_eq!(
        first, second,
        "the same seed gives the same weights and inputs"
    );
    assert!(first.iter().any(|v| *v > 0.0));
}

#[test]
fn data_notice_writes_what_a_data_sets_licences_mean_for_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("image_only")).unwrap();
    let header = "name,category,label,source,licence,split\n";
    std::fs::write(data.join("items.csv"), header).unwrap();
    std::fs::write(
        data.join("image_only/items.csv"),
        format!(
            "{header}cow,animal,cow,tuxpaint-stamps-default:cow,GPL-2,train\n\
             bus,vehicle,bus,openclipart-png:bus,public domain,train\n\
             wolf,animal,wolf,0ad-data:wolf,CC-BY-SA-3.0,test\n"
        ),
    )
    .unwrap();
    let notice = dir.path().join("NOTICE.md");
    ok(&["data", "notice", "--data", s(&data), "--out", s(&notice)]);
    let text = std::fs::read_to_string(&notice).unwrap();
    assert!(text.contains("distributed under GPL-2."), "{text}");
    assert!(
        text.contains("### openclipart-png") && !text.contains("0ad-data"),
        "{text}"
    );

    fails(
        &[
            "data",
            "notice",
            "--data",
            s(dir.path()),
            "--out",
            s(&notice),
        ],
        "items.csv",
    );
    fails(
        &[
            "data",
            "notice",
            "--data",
            s(&data),
            "--out",
            s(&dir.path().join("no/such/dir/N.md")),
        ],
        "cannot write",
    );
}
