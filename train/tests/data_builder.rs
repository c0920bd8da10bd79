//! The data set builder on small local package trees (no network): pairing, the held-out split, GCompris and
//! the SoundFont on request, and keeping an earlier build's split.

mod common;

use std::path::{Path, PathBuf};

use common::{built_package_tree, local_build, package_tree, picture, sound};
use image::{Rgba, RgbaImage};
use s2v_train::dataset::build::{BuildOptions, build_default};
use s2v_train::dataset::notice::data_notice;
use s2v_train::dataset::{Dataset, Item, PAIRS_CSV, Split, write_items};

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
    s2v_train::dataset::write_items(&out.join("image_only/items.csv"), &leaked).unwrap();
    let error = Dataset::open(&out).unwrap_err().to_string();
    assert!(error.contains("held-out item"), "{error}");
}

#[test]
fn a_builds_notice_names_its_packages_and_the_licence_of_weights_trained_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = built_package_tree(dir.path());
    let notice = data_notice(
        &Dataset::open(&out).unwrap(),
        Some(&dir.path().join("unpacked")),
    );
    // Six of the nine paired stamps train (one thing in three per category is held out), and three stamps
    // and two clip-art pictures without a sound.
    assert!(
        notice.contains("6 pairs of a sound and its own picture, 5 pictures without a sound"),
        "{notice}"
    );
    assert!(
        notice.contains(
            "### tuxpaint-stamps-default\n\nCopyright 2002-2022 by Bill Kendrick (the package's"
        ),
        "{notice}"
    );
    assert!(notice.contains("\n9 training items."), "{notice}");
    assert!(
        notice.contains("the weights are distributed under GPL-2."),
        "{notice}"
    );
    // This tree gives Openclipart no copyright file: its pictures are listed for a person to read.
    assert!(notice.contains("### openclipart-png"), "{notice}");
    assert!(notice.contains("cannot classify"), "{notice}");
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
    let stamp = pair("tuxpaint_hobbies_music_string_violin").unwrap();
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
    use s2v_train::dataset::qt_resources::write_resources;
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
    assert_eq!(
        violin.split,
        item("tuxpaint_hobbies_music_string_violin").split
    );

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
    let violin_stamp = "tuxpaint_hobbies_music_string_violin";
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
    let stamp = unpacked.join("usr/share/tuxpaint/stamps/hobbies/music/string/violin.ogg");
    std::fs::remove_file(&stamp).unwrap();
    let error = build_default(&BuildOptions {
        split_from: Some(earlier.root.clone()),
        ..local_build(&dir.path().join("again"), &unpacked)
    })
    .unwrap_err();
    assert!(format!("{error:#}").contains(violin_stamp), "{error:#}");
}
