//! The default model's pipeline at toy size: the data set builder on a small local package tree (no network),
//! then all three training stages, their checkpoints, and resuming.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use image::{Rgba, RgbaImage};
use s2v_models::discriminator::DiscriminatorConfig;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, NetworkModule, load_checkpoint};
use s2v_worker::dataset::build::{BuildOptions, build_default};
use s2v_worker::dataset::{Dataset, Item, PAIRS_CSV, Split, write_items};
use s2v_worker::eval::{EvalOptions, evaluate};
use s2v_worker::train::{
    AUDIO_ENCODER_FILE, GENERATOR_FILE, IMAGE_ENCODER_FILE, Preset, Recipe, Recorder, Stage,
    StageProgress, TrainOptions, train,
};

type B = Autodiff<Flex>;

/// A picture: a coloured disc or square on a transparent background, shaded in a coarse checkered pattern of
/// its own (derived from its colour), so that pictures differ in more than the colour that SimCLR's colour
/// jitter and greyscale take away.
fn picture(path: &Path, colour: [u8; 3], square: bool) {
    let key = u32::from_le_bytes([colour[0], colour[1], colour[2], 1]);
    let mut img = RgbaImage::new(40, 30);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as i32 - 20, y as i32 - 15);
        let inside = if square {
            dx.abs() < 10 && dy.abs() < 10
        } else {
            dx * dx + dy * dy < 100
        };
        let cell = (x / 5) * 7 + y / 5;
        let dark = key.wrapping_mul(0x9E37_79B9).rotate_left(cell % 32) & 1 == 1;
        let shade = |c: u8| if dark { c / 3 } else { c };
        *p = if inside {
            Rgba([shade(colour[0]), shade(colour[1]), shade(colour[2]), 255])
        } else {
            Rgba([0, 0, 0, 0])
        };
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// A sound: a tone that sweeps from `hz`, 1.5 s at 22.05 kHz (the builder resamples it). Written as WAV under
/// the `.ogg` name Tux Paint uses: the decoder goes by content.
fn sound(path: &Path, hz: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..33_075 {
        let t = f64::from(i) / 22_050.0;
        let v = (2.0 * std::f64::consts::PI * hz * t * (1.0 + t)).sin() * 0.5;
        w.write_sample((v * 32_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A miniature of the two packages' trees: paired stamps in three categories, image-only stamps and clip art.
fn package_tree(root: &Path) {
    let stamps = root.join("usr/share/tuxpaint/stamps");
    let paired = [
        ("animals/birds/crow", [20, 20, 20], 300.0),
        ("animals/birds/owl", [120, 80, 40], 450.0),
        ("animals/birds/lark", [160, 140, 90], 700.0),
        ("animals/mammals/cow", [240, 240, 240], 120.0),
        ("animals/mammals/pig", [250, 170, 180], 200.0),
        ("animals/mammals/dog", [150, 100, 50], 250.0),
        ("hobbies/music/drum", [200, 30, 30], 900.0),
        ("hobbies/music/violin", [130, 60, 20], 1300.0),
        ("hobbies/music/cello", [100, 50, 20], 1100.0),
    ];
    for (i, (name, colour, hz)) in paired.iter().enumerate() {
        picture(&stamps.join(format!("{name}.png")), *colour, i % 2 == 0);
        sound(&stamps.join(format!("{name}.ogg")), *hz);
    }
    for (i, name) in [
        "animals/birds/robin",
        "vehicles/car",
        "food/apple",
        "symbols/math/1",
    ]
    .iter()
    .enumerate()
    {
        picture(
            &stamps.join(format!("{name}.png")),
            [40 * i as u8, 200, 100],
            i % 2 == 1,
        );
    }
    // A symbol's spoken name is not a scene's sound: the builder must leave it out.
    sound(&stamps.join("symbols/math/1.ogg"), 500.0);
    let clipart = root.join("usr/share/openclipart/png");
    picture(
        &clipart.join("animals/birds/eagle.png"),
        [90, 60, 30],
        false,
    );
    picture(&clipart.join("transportation/bus.png"), [250, 200, 0], true);
    let doc = root.join("usr/share/doc/tuxpaint-stamps-default");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(doc.join("copyright"), "Files: *\nLicense: GPL-2\n").unwrap();
}

/// A build from a local package tree (no download), one item group in three held out, no optional package.
fn local_build(out: &Path, unpacked: &Path) -> BuildOptions {
    BuildOptions {
        out: out.to_path_buf(),
        unpacked: Some(unpacked.to_path_buf()),
        test_every: 3,
        gcompris: false,
        soundfont: false,
        split_from: None,
    }
}

#[test]
fn the_builder_pairs_sounds_with_pictures_and_holds_out_whole_items() {
    let dir = tempfile::tempdir().unwrap();
    package_tree(&dir.path().join("unpacked"));
    // Two clip-art files whose names differ only in a character that item names replace.
    let transportation = dir
        .path()
        .join("unpacked/usr/share/openclipart/png/transportation");
    picture(&transportation.join("van-red.png"), [200, 0, 0], false);
    picture(&transportation.join("van_red.png"), [0, 0, 200], false);
    let out = dir.path().join("data");
    let summary = build_default(&local_build(&out, &dir.path().join("unpacked"))).unwrap();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_eq!(summary.pairs_train + summary.pairs_test, 9);
    assert_eq!(summary.pairs_test, 3, "one item in three per category");
    assert_eq!(
        summary.image_only, 7,
        "three stamps (not the symbol) and four clip-art pictures"
    );

    let dataset = Dataset::open(&out).unwrap();
    for item in &dataset.pairs {
        let wav = hound::WavReader::open(dataset.pair_audio(item)).unwrap();
        assert_eq!(wav.spec().sample_rate, 16_000);
        assert_eq!(wav.spec().channels, 1);
        let picture = image::open(dataset.pair_image(item)).unwrap();
        assert_eq!((picture.width(), picture.height()), (128, 128));
        assert_eq!(item.licence, "GPL-2");
    }
    let mut categories = dataset.categories();
    categories.sort();
    assert_eq!(categories, ["bird", "instrument", "mammal"]);
    for category in &categories {
        assert_eq!(
            dataset
                .pairs_in(Split::Test)
                .filter(|i| &i.category == category)
                .count(),
            1
        );
    }
    let openclipart = dataset
        .image_only
        .iter()
        .find(|i| i.source.contains("eagle"))
        .unwrap();
    assert_eq!(openclipart.category, "bird");
    assert!(
        openclipart.licence.starts_with("unknown"),
        "no copyright file in this tree"
    );
    // Each van keeps its own name and its own picture.
    let vans: Vec<_> = dataset
        .image_only
        .iter()
        .filter(|i| i.source.contains("van"))
        .collect();
    let names: Vec<&str> = vans.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openclipart_transportation_van_red",
            "openclipart_transportation_van_red_2"
        ]
    );
    let blue_share = |item: &Item| {
        let picture = image::open(dataset.image_only_image(item))
            .unwrap()
            .to_rgb8();
        let centre = picture.get_pixel(64, 64);
        centre[2] as f32 / (1.0 + centre[0] as f32 + centre[2] as f32)
    };
    assert!(blue_share(vans[0]) < 0.2 && blue_share(vans[1]) > 0.8);
    // A held-out picture listed for training is refused.
    let test_name = dataset.pairs_in(Split::Test).next().unwrap().name.clone();
    let mut leaked = dataset.image_only.clone();
    leaked[0].name = test_name;
    s2v_worker::dataset::write_items(&out.join("image_only/items.csv"), &leaked).unwrap();
    let error = Dataset::open(&out).unwrap_err().to_string();
    assert!(error.contains("held-out item"), "{error}");
}

/// A SoundFont of two presets, a violin (0:40) and the percussion set (128:0), both playing one looped 400 Hz
/// sine whose original pitch is key 67.
fn sound_font(path: &Path) {
    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = id.to_vec();
        bytes.extend((body.len() as u32).to_le_bytes());
        bytes.extend(body);
        bytes
    }
    fn list(kind: &[u8; 4], chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut body = kind.to_vec();
        for c in chunks {
            body.extend(c);
        }
        chunk(b"LIST", &body)
    }
    fn name(text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(20, 0);
        bytes
    }
    let u16s =
        |values: &[u16]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let u32s =
        |values: &[u32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    const LENGTH: u32 = 8_000;
    let mut samples: Vec<u8> = (0..LENGTH)
        .flat_map(|i| {
            let v = (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 16_000.0).sin();
            ((v * 20_000.0) as i16).to_le_bytes()
        })
        .collect();
    samples.extend([0u8; 2 * 46]);
    let preset = |title: &str, program: u16, bank: u16, bag: u16| {
        [name(title), u16s(&[program, bank, bag]), u32s(&[0, 0, 0])].concat()
    };
    let phdr = [
        preset("Violin", 40, 0, 0),
        preset("Drums", 0, 128, 1),
        preset("EOP", 0, 0, 2),
    ]
    .concat();
    const INSTRUMENT: u16 = 41;
    const SAMPLE_MODES: u16 = 54;
    const SAMPLE_ID: u16 = 53;
    let pdta = list(
        b"pdta",
        &[
            chunk(b"phdr", &phdr),
            chunk(b"pbag", &u16s(&[0, 0, 1, 0, 2, 0])),
            chunk(b"pmod", &[0; 10]),
            chunk(b"pgen", &u16s(&[INSTRUMENT, 0, INSTRUMENT, 0, 0, 0])),
            chunk(
                b"inst",
                &[name("Sine"), u16s(&[0]), name("EOI"), u16s(&[1])].concat(),
            ),
            chunk(b"ibag", &u16s(&[0, 0, 2, 0])),
            chunk(b"imod", &[0; 10]),
            chunk(b"igen", &u16s(&[SAMPLE_MODES, 1, SAMPLE_ID, 0, 0, 0])),
            chunk(
                b"shdr",
                &[
                    name("Sine"),
                    u32s(&[0, LENGTH, 0, LENGTH, 16_000]),
                    vec![67, 0],
                    u16s(&[0, 1]),
                    name("EOS"),
                    vec![0; 26],
                ]
                .concat(),
            ),
        ],
    );
    let info = list(
        b"INFO",
        &[
            chunk(b"ifil", &u16s(&[2, 1])),
            chunk(b"isng", b"EMU8000\0"),
            chunk(b"INAM", b"test\0\0"),
        ],
    );
    let sdta = list(b"sdta", &[chunk(b"smpl", &samples)]);
    let riff = chunk(b"RIFF", &[b"sfbk".to_vec(), info, sdta, pdta].concat());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, riff).unwrap();
}

#[test]
fn the_soundfont_plays_the_instruments_that_instrument_pictures_show() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    package_tree(&unpacked);
    let music = unpacked.join("usr/share/openclipart/png/recreation/music");
    for (i, name) in [
        "violin_ganson",
        "maracas_ganson",
        "trumpet_ganson",
        "treble_clef_01",
    ]
    .iter()
    .enumerate()
    {
        picture(
            &music.join(format!("{name}.png")),
            [60 * i as u8, 90, 200],
            i % 2 == 0,
        );
    }
    sound_font(&unpacked.join("usr/share/sounds/sf2/FluidR3_GM.sf2"));
    let doc = unpacked.join("usr/share/doc/fluid-soundfont-gm");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(
        doc.join("copyright"),
        "License:\n\n \"I hereby release Fluid under the MIT license, as described in COPYING.\"\n",
    )
    .unwrap();
    let out = dir.path().join("data");
    let summary = build_default(&BuildOptions {
        soundfont: true,
        ..local_build(&out, &unpacked)
    })
    .unwrap();
    // The SoundFont has no trumpet: that picture stays without a sound, and the build says why.
    assert_eq!(summary.skipped.len(), 1, "{:?}", summary.skipped);
    assert!(
        summary.skipped[0].contains("trumpet_ganson") && summary.skipped[0].contains("0:56"),
        "{:?}",
        summary.skipped
    );

    let dataset = Dataset::open(&out).unwrap();
    let pair = |name: &str| dataset.pairs.iter().find(|i| i.name == name);
    let violin = pair("openclipart_recreation_music_violin_ganson").expect("the violin is paired");
    assert_eq!(violin.category, "instrument");
    let no_copyright = dir
        .path()
        .join("unpacked/usr/share/doc/openclipart-png/copyright");
    assert_eq!(
        violin.licence,
        format!(
            "picture: unknown: no {}; sound: MIT (fluid-soundfont-gm: Violin)",
            no_copyright.display()
        )
    );
    // One thing, one group: the clip-art violin is held out exactly when Tux Paint's is.
    let stamp = pair("tuxpaint_hobbies_music_violin").unwrap();
    assert_eq!(violin.split, stamp.split);
    assert!(pair("openclipart_recreation_music_maracas_ganson").is_some());
    for stays in ["trumpet_ganson", "treble_clef_01"] {
        let name = format!("openclipart_recreation_music_{stays}");
        assert!(pair(&name).is_none());
        assert!(dataset.image_only.iter().any(|i| i.name == name));
    }
    // The picture moved from the image-only set to the pairs.
    assert!(dataset.pair_image(violin).exists());
    assert!(
        !out.join("image_only/images")
            .join(format!("{}.jpg", violin.name))
            .exists()
    );

    // Four notes of half a second, the chord for three notes' time, one second of ring; the first note is the
    // violin's root, key 67: the sample's own 400 Hz.
    let wav = hound::WavReader::open(dataset.pair_audio(violin)).unwrap();
    assert_eq!((wav.spec().sample_rate, wav.spec().channels), (16_000, 1));
    let samples: Vec<f64> = wav
        .into_samples::<i16>()
        .map(|s| f64::from(s.unwrap()) / f64::from(i16::MAX))
        .collect();
    assert_eq!(samples.len(), 72_000);
    let peak = samples.iter().fold(0f64, |m, s| m.max(s.abs()));
    assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
    let first_note = &samples[800..6_400];
    let crossings = first_note
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count() as f64;
    let hz = crossings / 2.0 / (first_note.len() as f64 / 16_000.0);
    assert!((hz - 400.0).abs() < 20.0, "the first note is at {hz} Hz");
}

/// GCompris's archives in miniature: instruments with drawings, farm animals with photos, and their sounds.
fn gcompris_tree(root: &Path) {
    use s2v_worker::dataset::qt_resources::write_resources;
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let tone = |hz: f64| {
        let path = scratch.join(format!("{hz}.wav"));
        sound(&path, hz);
        std::fs::read(path).unwrap()
    };
    let drawing = br##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">
        <rect x="5" y="5" width="30" height="10" fill="#202020"/><text x="0" y="10">violin</text></svg>"##;
    let mut photo = Vec::new();
    image::DynamicImage::ImageRgba8(RgbaImage::from_pixel(16, 12, Rgba([200, 120, 40, 255])))
        .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut photo))
        .unwrap();
    let rcc = root.join("usr/share/gcompris-qt/rcc");
    std::fs::create_dir_all(&rcc).unwrap();
    let base = "gcompris/src/activities";
    let (violin, drums, chickens, cow) = (tone(1250.0), tone(80.0), tone(600.0), tone(110.0));
    std::fs::write(
        rcc.join("instruments.rcc"),
        write_resources(&[
            (
                &format!("{base}/instruments/resource/violin.ogg"),
                &violin,
                true,
            ),
            (
                &format!("{base}/instruments/resource/violin.svg"),
                drawing,
                true,
            ),
            (
                &format!("{base}/instruments/resource/background.svg"),
                drawing,
                false,
            ),
            // A sound without a picture is left out.
            (
                &format!("{base}/instruments/resource/drum_kit.ogg"),
                &drums,
                false,
            ),
            (
                &format!("{base}/instruments/resource/README"),
                b"drum_kit.ogg: http://example.org/29534  Creative Commons Sampling Plus 1.0 License.\n\n\
                  Copyright: 2008 someone\nLicense: GPLv3\nFiles:\nbackground.svg\nviolin.svg\n",
                false,
            ),
        ]),
    )
    .unwrap();
    std::fs::write(
        rcc.join("explore_farm_animals.rcc"),
        write_resources(&[
            (
                &format!("{base}/explore_farm_animals/resource/animals/chickens.ogg"),
                &chickens,
                true,
            ),
            (
                &format!("{base}/explore_farm_animals/resource/animals/chicken.webp"),
                &photo,
                false,
            ),
            (
                &format!("{base}/explore_farm_animals/resource/animals/cow.ogg"),
                &cow,
                true,
            ),
            (
                &format!("{base}/explore_farm_animals/resource/animals/cow.svg"),
                drawing,
                true,
            ),
            (
                &format!("{base}/explore_farm_animals/resource/animals/README"),
                b"Copyright: Someone\nLicense: CC0-1.0\nSource: https://example.org/x.jpg\nFiles:\n\
                  chicken.webp\n\nLicense: GPLv3\nFiles:\nchickens.ogg\n",
                true,
            ),
        ]),
    )
    .unwrap();
    let doc = root.join("usr/share/doc/gcompris-qt-data");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(doc.join("copyright"), "Files: *\nLicense: GPL-3+\n").unwrap();
}

/// The miniature packages and GCompris's archives, unpacked under `dir`.
fn packages_with_gcompris(dir: &Path) -> PathBuf {
    let unpacked = dir.join("unpacked");
    package_tree(&unpacked);
    gcompris_tree(&unpacked);
    unpacked
}

#[test]
fn gcompris_adds_its_instruments_and_farm_animals_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = packages_with_gcompris(dir.path());
    let out = dir.path().join("data");
    let summary = build_default(&BuildOptions {
        gcompris: true,
        ..local_build(&out, &unpacked)
    })
    .unwrap();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_eq!(summary.pairs_train + summary.pairs_test, 9 + 3);

    let dataset = Dataset::open(&out).unwrap();
    let item = |name: &str| {
        dataset
            .pairs
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} is missing"))
    };
    let violin = item("gcompris_instruments_violin");
    assert_eq!(violin.category, "instrument");
    // Each file's licence from the README beside it, else the package's.
    assert_eq!(violin.licence, "sound: GPL-3+; picture: GPLv3");
    assert_eq!(
        item("gcompris_explore_farm_animals_chicken").licence,
        "sound: GPLv3; picture: CC0-1.0"
    );
    assert!(
        violin
            .source
            .starts_with("gcompris-qt-data:instruments.rcc/")
    );
    assert_eq!(
        item("gcompris_explore_farm_animals_chicken").category,
        "bird"
    );
    assert_eq!(item("gcompris_explore_farm_animals_cow").category, "mammal");
    // One thing in two packages is one group: both violins are held out, or neither.
    assert_eq!(violin.split, item("tuxpaint_hobbies_music_violin").split);

    // The drawing is drawn: a dark bar across the middle of a white square.
    let picture = image::open(dataset.pair_image(violin)).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (128, 128));
    assert!(
        picture.get_pixel(64, 64)[0] < 80,
        "{:?}",
        picture.get_pixel(64, 64)
    );
    assert!(
        picture.get_pixel(64, 5)[0] > 240,
        "{:?}",
        picture.get_pixel(64, 5)
    );
    let photo = image::open(dataset.pair_image(item("gcompris_explore_farm_animals_chicken")))
        .unwrap()
        .to_rgb8();
    let centre = photo.get_pixel(64, 64);
    assert!((i32::from(centre[0]) - 200).abs() < 12, "{centre:?}");
    let wav = hound::WavReader::open(dataset.pair_audio(violin)).unwrap();
    assert_eq!(wav.spec().sample_rate, 16_000);
}

#[test]
fn a_build_can_keep_an_earlier_builds_held_out_split() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = packages_with_gcompris(dir.path());
    let earlier = dir.path().join("earlier");
    build_default(&local_build(&earlier, &unpacked)).unwrap();
    // A split chosen by hand is kept as well as a drawn one: this one also holds out the violin, which
    // GCompris has too.
    let violin_stamp = "tuxpaint_hobbies_music_violin";
    let mut items = Dataset::open(&earlier).unwrap().pairs;
    items
        .iter_mut()
        .find(|i| i.name == violin_stamp)
        .unwrap()
        .split = Split::Test;
    write_items(&earlier.join(PAIRS_CSV), &items).unwrap();
    let earlier = Dataset::open(&earlier).unwrap();
    let held_out = |dataset: &Dataset| {
        let mut sources: Vec<String> = dataset
            .pairs_in(Split::Test)
            .map(|i| i.source.clone())
            .collect();
        sources.sort();
        sources
    };

    // With GCompris, a drawn split would move; the kept one does not.
    let out = dir.path().join("data");
    let summary = build_default(&BuildOptions {
        gcompris: true,
        split_from: Some(earlier.root.clone()),
        ..local_build(&out, &unpacked)
    })
    .unwrap();
    let dataset = Dataset::open(&out).unwrap();
    assert_eq!(held_out(&dataset), held_out(&earlier));
    // GCompris's violin is the held-out violin's group: left out with its files, and said so.
    let violin = "gcompris_instruments_violin";
    assert!(dataset.pairs.iter().all(|i| i.name != violin));
    assert!(!out.join("audios").join(format!("{violin}.wav")).exists());
    assert!(!out.join("images").join(format!("{violin}.jpg")).exists());
    assert_eq!(summary.skipped.len(), 1, "{:?}", summary.skipped);
    assert!(summary.skipped[0].contains(violin) && summary.skipped[0].contains("`violin`"));
    // The farm animals are new things: training pairs.
    for name in [
        "gcompris_explore_farm_animals_chicken",
        "gcompris_explore_farm_animals_cow",
    ] {
        let item = dataset.pairs.iter().find(|i| i.name == name).unwrap();
        assert_eq!(item.split, Split::Train, "{name}");
    }
    assert_eq!(summary.pairs_test, held_out(&earlier).len());
    assert_eq!(
        summary.pairs_train,
        earlier.pairs_in(Split::Train).count() + 2
    );

    // A build that lacks one of the earlier held-out items cannot keep its split.
    let stamp = unpacked.join("usr/share/tuxpaint/stamps/hobbies/music/violin.ogg");
    std::fs::remove_file(&stamp).unwrap();
    let error = build_default(&BuildOptions {
        split_from: Some(earlier.root.clone()),
        ..local_build(&dir.path().join("again"), &unpacked)
    })
    .unwrap_err();
    assert!(format!("{error:#}").contains(violin_stamp), "{error:#}");
}

/// Every tensor of two safetensors files is bit-identical (the files' metadata may be ordered differently).
fn assert_same_tensors(a: &Path, b: &Path) {
    let (bytes_a, bytes_b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (ta, tb) = (
        safetensors::SafeTensors::deserialize(&bytes_a).unwrap(),
        safetensors::SafeTensors::deserialize(&bytes_b).unwrap(),
    );
    let mut names = ta.names();
    names.sort();
    let mut other = tb.names();
    other.sort();
    assert_eq!(
        names,
        other,
        "{} and {} hold different tensors",
        a.display(),
        b.display()
    );
    for name in names {
        assert!(
            ta.tensor(name).unwrap().data() == tb.tensor(name).unwrap().data(),
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A stage's progress in run `out`, which must exist.
fn progress(out: &Path, stage: Stage) -> StageProgress {
    StageProgress::read(out, stage)
        .unwrap()
        .unwrap_or_else(|| panic!("{stage:?} has no progress in {}", out.display()))
}

/// How many updates Adam has made to the discriminator of run `out`, read from its checkpoint.
fn discriminator_updates(out: &Path, recipe: &Recipe) -> usize {
    use burn::module::Module;
    use burn::optim::{AdamConfig, Optimizer};
    use burn::record::Recorder as _;
    use s2v_models::discriminator::Discriminator;
    let dir = out.join("checkpoints").join("generator");
    let device = Default::default();
    let discriminator = Discriminator::<B>::init(&recipe.discriminator, &device)
        .load_file(dir.join("discriminator"), &Recorder::new(), &device)
        .unwrap();
    let record = Recorder::new()
        .load(dir.join("discriminator-optimizer.mpk"), &device)
        .unwrap();
    let optimizer = AdamConfig::new()
        .init::<B, Discriminator<B>>()
        .load_record(record);
    let mut states = optimizer.to_record();
    let bias = states
        .remove(&discriminator.linear_bias.id)
        .expect("the optimiser holds a state for the discriminator's bias");
    bias.into_state::<1>().momentum.time
}

fn first_and_last_loss(progress: &StageProgress, name: &str) -> (f64, f64) {
    let value =
        |entry: &(usize, Vec<(String, f64)>)| entry.1.iter().find(|(n, _)| n == name).unwrap().1;
    (
        value(progress.losses.first().unwrap()),
        value(progress.losses.last().unwrap()),
    )
}

#[test]
fn three_stages_train_checkpoint_and_resume_where_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    package_tree(&dir.path().join("unpacked"));
    let data = dir.path().join("data");
    build_default(&local_build(&data, &dir.path().join("unpacked"))).unwrap();
    let recipe = Recipe::preset(Preset::Tiny);
    let device = Default::default();
    let options = |out: &Path, max_steps: Option<usize>| TrainOptions {
        data: data.clone(),
        out: out.to_path_buf(),
        recipe: recipe.clone(),
        seed: 7,
        max_steps_per_call: max_steps,
        deadline: None,
        stage_seconds: None,
        only: None,
        image_encoder: None,
        fresh_discriminator: false,
    };

    // Interrupted after 5 steps, then every 15, in the middle of every stage and off its checkpoint interval.
    let resumed = dir.path().join("resumed");
    assert!(!train::<B>(&options(&resumed, Some(5)), &device).unwrap());
    let partial = progress(&resumed, Stage::ImageEncoder);
    assert_eq!(partial.step, 5);
    // A call whose time is already up stops before its first step and leaves the checkpoint as it was.
    let out_of_time = TrainOptions {
        deadline: Some(std::time::Instant::now()),
        ..options(&resumed, None)
    };
    assert!(!train::<B>(&out_of_time, &device).unwrap());
    let unchanged = progress(&resumed, Stage::ImageEncoder);
    assert_eq!(unchanged.step, 5);
    assert!(
        StageProgress::read(&resumed, Stage::Generator)
            .unwrap()
            .is_none()
    );
    let mut calls = 1;
    while !train::<B>(&options(&resumed, Some(15)), &device).unwrap() {
        calls += 1;
        assert!(calls < 20, "training never finishes");
    }
    assert!(calls >= 5, "every stage was interrupted ({calls} calls)");

    // Uninterrupted, same seed: resuming must have continued exactly where it stopped (weights, optimiser
    // state, batch-norm statistics, spectral-norm vectors and random draws all restored).
    let straight = dir.path().join("straight");
    assert!(train::<B>(&options(&straight, None), &device).unwrap());
    for file in [IMAGE_ENCODER_FILE, GENERATOR_FILE, AUDIO_ENCODER_FILE] {
        assert_same_tensors(&resumed.join(file), &straight.join(file));
    }

    // Losses fall.
    let image = progress(&straight, Stage::ImageEncoder);
    let (first, last) = first_and_last_loss(&image, "nt-xent");
    assert!(last < first, "SimCLR loss went from {first} to {last}");
    let gan = progress(&straight, Stage::Generator);
    // DiffAugment keeps the discriminator from winning quickly, so its hinge loss need not fall in a few
    // steps; the generator's pull towards the instance's own picture must.
    let (first, last) = first_and_last_loss(&gan, "l1");
    assert!(
        last < first,
        "the generator's L1 to its instances went from {first} to {last}"
    );
    let audio = progress(&straight, Stage::AudioEncoder);
    let (first, last) = first_and_last_loss(&audio, "info-nce");
    assert!(last < first, "InfoNCE went from {first} to {last}");
    assert_eq!(audio.step, recipe.audio_steps);

    // The exported networks load back into the recipe's architecture.
    let dev = Default::default();
    let e: ImageEncoder<Flex> = load_checkpoint(&straight.join(IMAGE_ENCODER_FILE), &dev).unwrap();
    assert_eq!(e.config(), recipe.image_encoder);
    let g: Generator<Flex> = load_checkpoint(&straight.join(GENERATOR_FILE), &dev).unwrap();
    assert_eq!(g.config(), recipe.generator);
    let a: AudioEncoder<Flex> = load_checkpoint(&straight.join(AUDIO_ENCODER_FILE), &dev).unwrap();
    assert_eq!(a.config(), recipe.audio_encoder);

    // A finished run has nothing left to do.
    assert!(train::<B>(&options(&straight, None), &device).unwrap());
    assert_eq!(
        progress(&straight, Stage::AudioEncoder).step,
        recipe.audio_steps
    );

    // A trained image encoder given with `image_encoder` is used frozen: stage (a) does not run, the generator
    // trains against it, and it is exported as it was given.
    let frozen = dir.path().join("frozen");
    let given = TrainOptions {
        image_encoder: Some(straight.join(IMAGE_ENCODER_FILE)),
        only: Some(Stage::Generator),
        ..options(&frozen, None)
    };
    assert!(train::<B>(&given, &device).unwrap());
    assert!(
        StageProgress::read(&frozen, Stage::ImageEncoder)
            .unwrap()
            .is_none()
    );
    assert_eq!(progress(&frozen, Stage::Generator).step, recipe.gan_steps);
    assert_same_tensors(
        &frozen.join(IMAGE_ENCODER_FILE),
        &straight.join(IMAGE_ENCODER_FILE),
    );
    // A generator run can go on with a wider discriminator, started anew; without saying so, the narrower
    // checkpoint is refused, naming the tensor.
    let widened = dir.path().join("widened");
    let first_half = TrainOptions {
        max_steps_per_call: Some(recipe.gan_steps / 2),
        out: widened.clone(),
        ..given.clone()
    };
    assert!(!train::<B>(&first_half, &device).unwrap());
    let mut wider_discriminator = recipe.clone();
    wider_discriminator.discriminator =
        DiscriminatorConfig::biggan(2, recipe.resolution, recipe.generator.feature_dim);
    let unannounced = TrainOptions {
        recipe: wider_discriminator,
        max_steps_per_call: None,
        ..first_half.clone()
    };
    let error = format!("{:#}", train::<B>(&unannounced, &device).unwrap_err());
    assert!(
        error.contains("discriminator.mpk") && error.contains("--fresh-discriminator"),
        "{error}"
    );
    let announced = TrainOptions {
        fresh_discriminator: true,
        ..unannounced
    };
    assert!(train::<B>(&announced, &device).unwrap());
    assert_eq!(progress(&widened, Stage::Generator).step, recipe.gan_steps);

    // With three discriminator updates per generator update (BigGAN's `num_D_steps`), the discriminator's
    // optimiser has stepped three times for each of the generator's steps; with the preset's one, once.
    let tripled = dir.path().join("tripled");
    let mut three_updates = recipe.clone();
    three_updates.gan_discriminator_steps = 3;
    let triple = TrainOptions {
        recipe: three_updates,
        out: tripled.clone(),
        ..given.clone()
    };
    assert!(train::<B>(&triple, &device).unwrap());
    assert_eq!(progress(&tripled, Stage::Generator).step, recipe.gan_steps);
    assert_eq!(
        discriminator_updates(&tripled, &recipe),
        3 * recipe.gan_steps
    );
    assert_eq!(discriminator_updates(&frozen, &recipe), recipe.gan_steps);

    // One whose features do not fit the recipe is refused with both widths named.
    let mut wider = recipe.clone();
    wider.generator.feature_dim += 1;
    let refused = TrainOptions {
        recipe: wider,
        ..given.clone()
    };
    let error = format!("{:#}", train::<B>(&refused, &device).unwrap_err());
    assert!(
        error.contains("16-d features") && error.contains("17-d"),
        "{error}"
    );

    // A time budget per stage that the first step uses up ends every stage there; the run is finished and
    // exported, and a later call with the same budget trains no further.
    let timed = dir.path().join("timed");
    let budgeted = TrainOptions {
        stage_seconds: Some([1e-9; 3]),
        ..options(&timed, None)
    };
    for _ in 0..2 {
        assert!(train::<B>(&budgeted, &device).unwrap());
        for stage in [Stage::ImageEncoder, Stage::Generator, Stage::AudioEncoder] {
            assert_eq!(progress(&timed, stage).step, 1, "{stage:?}");
        }
    }
    for file in [IMAGE_ENCODER_FILE, GENERATOR_FILE, AUDIO_ENCODER_FILE] {
        assert!(timed.join(file).exists(), "{file} was not exported");
    }

    evaluation_judges_every_held_out_sound(&data, &straight, &dir.path().join("eval"));
}

/// `s2v eval` end to end on a trained toy model: every held-out sound is judged in every row of the report,
/// the figures are drawn at the sizes their contents need, and a second run (which reuses the classifier it
/// saved) gives the same report.
fn evaluation_judges_every_held_out_sound(data: &Path, model: &Path, out: &Path) {
    let options = EvalOptions {
        data: data.to_path_buf(),
        model: Some(model.to_path_buf()),
        out: out.to_path_buf(),
        seed: 3,
        samples: 2,
        classifier_steps: 8,
        truncation: None,
    };
    let report = evaluate::<B>(&options, &Default::default()).unwrap();

    let dataset = Dataset::open(data).unwrap();
    let held_out: Vec<_> = dataset.pairs_in(Split::Test).collect();
    let categories = dataset.categories();
    assert_eq!(report.categories, categories);
    assert_eq!(report.held_out_sounds, held_out.len());
    assert_eq!(report.chance.r1, 1.0 / categories.len() as f64);
    for (row, judged) in [
        (&report.generated, 2 * held_out.len()),
        (&report.generated_from_pictures, 2 * held_out.len()),
        (&report.generated_across_gap, 2 * held_out.len()),
        (&report.retrieval_baseline, held_out.len()),
        (&report.real_pictures, held_out.len()),
    ] {
        assert_eq!(row.judged, judged, "{row:?}");
        assert!((0.0..=1.0).contains(&row.r1) && row.r1 <= row.r5, "{row:?}");
        // The bootstrap over held-out sounds brackets each share.
        for (share, interval) in [(row.r1, row.r1_interval), (row.r5, row.r5_interval)] {
            let [low, high] = interval.unwrap();
            assert!(
                0.0 <= low && low <= share && share <= high && high <= 1.0,
                "{row:?}"
            );
        }
    }
    assert_eq!(report.chance.r1_interval, None);
    assert_eq!(
        report.geometry.pairs,
        dataset.pairs_in(Split::Train).count() + held_out.len()
    );
    assert!(report.geometry.gap.is_finite() && report.geometry.paired_cosine.is_finite());
    // Each neighbour share counts whole queries: the training library's pictures, or the held-out pairs.
    let neighbours = &report.neighbours;
    assert_eq!(neighbours.held_out_count, held_out.len());
    assert_eq!(
        neighbours.training_picture_count,
        dataset.training_images().len()
    );
    for (share, queries) in [
        (
            neighbours.training_pictures,
            neighbours.training_picture_count,
        ),
        (
            neighbours.training_pictures_by_pixels,
            neighbours.training_picture_count,
        ),
        (neighbours.held_out_pictures, held_out.len()),
        (neighbours.held_out_pictures_by_pixels, held_out.len()),
        (neighbours.held_out_sounds, held_out.len()),
        (neighbours.held_out_sounds_to_pictures, held_out.len()),
    ] {
        let hits = share * queries as f64;
        assert!(
            (0.0..=1.0).contains(&share) && (hits - hits.round()).abs() < 1e-9,
            "{neighbours:?}"
        );
    }
    let gains: Vec<f64> = report.volume.iter().map(|v| v.0).collect();
    assert_eq!(gains, [0.1, 0.3, 1.0, 3.0]);
    let mixable = (0..held_out.len())
        .flat_map(|i| (i + 1..held_out.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| held_out[i].category != held_out[j].category)
        .count();
    assert_eq!(report.mixed_pairs, mixable.min(12));

    // The grid has a row per category with a held-out sound: gutter 4, tiles of 64 px drawn at twice the size.
    let rows = categories
        .iter()
        .filter(|c| held_out.iter().any(|i| &i.category == *c))
        .count() as u32;
    let grid = image::open(out.join("grid.png")).unwrap();
    assert_eq!(grid.height(), 4 + rows * (128 + 4));
    for figure in ["volume.png", "mixing.png", "features.png"] {
        image::open(out.join(figure)).unwrap_or_else(|e| panic!("{figure}: {e}"));
    }
    let written = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert_eq!(written, serde_json::to_string_pretty(&report).unwrap());

    assert!(out.join("classifier.mpk").exists());
    let again = evaluate::<B>(&options, &Default::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&report).unwrap()
    );

    // The truncation trick reaches every generated picture and nothing else, and is recorded.
    let untruncated_grid = std::fs::read(out.join("grid.png")).unwrap();
    let truncated = evaluate::<B>(
        &EvalOptions {
            truncation: Some(0.5),
            ..options.clone()
        },
        &Default::default(),
    )
    .unwrap();
    assert_eq!(truncated.truncation, Some(0.5));
    assert_ne!(
        std::fs::read(out.join("grid.png")).unwrap(),
        untruncated_grid
    );
    for (a, b) in [
        (&truncated.real_pictures, &report.real_pictures),
        (&truncated.retrieval_baseline, &report.retrieval_baseline),
    ] {
        assert_eq!((a.r1, a.r5), (b.r1, b.r5));
    }
    let refused = evaluate::<B>(
        &EvalOptions {
            truncation: Some(0.0),
            ..options
        },
        &Default::default(),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("truncation"), "{refused}");
}

/// The shipped default model must decode into the default recipe's architecture and run.
#[test]
fn the_shipped_default_model_decodes_into_the_default_architecture() {
    use burn::prelude::*;
    use s2v_models::default_model;
    let total = default_model::IMAGE_ENCODER.len()
        + default_model::GENERATOR.len()
        + default_model::AUDIO_ENCODER.len();
    assert!(
        total <= 25 << 20,
        "the default model is {total} bytes, over 25 MB"
    );
    let recipe = Recipe::preset(Preset::Default);
    let device = Default::default();
    let image: ImageEncoder<Flex> = default_model::load(&device).unwrap();
    assert_eq!(image.config(), recipe.image_encoder);
    let generator: Generator<Flex> = default_model::load(&device).unwrap();
    assert_eq!(generator.config(), recipe.generator);
    let audio: AudioEncoder<Flex> = default_model::load(&device).unwrap();
    assert_eq!(audio.config(), recipe.audio_encoder);

    let tone: Vec<f64> = (0..160_000)
        .map(|i| (f64::from(i) * 0.07).sin() * 0.3)
        .collect();
    let spectrogram = s2v_shared::audio::log_spectrogram(&tone).unwrap();
    let x = Tensor::<Flex, 4>::from_data(
        TensorData::new(spectrogram.data, [1, 1, 257, 1004]),
        &device,
    );
    let latent = audio.forward(x);
    assert_eq!(latent.dims(), [1, 512]);
    let z = Tensor::<Flex, 2>::zeros([1, recipe.generator.dim_z()], &device);
    let picture = generator.forward(z, latent);
    assert_eq!(picture.dims(), [1, 3, 64, 64]);
    let values = picture.into_data().to_vec::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
}
