//! `--with-labelled-sources` on a miniature of the games' trees at their real paths: files in folders, in a
//! zip archive and in OpenSFX's catalogue get the reviewed table's labels and their own licences; long
//! recordings become clips; a file shipped twice is kept once; sounds go to the audio-only set and pictures
//! to the image-only set; the per-label counts are written; and training pairs those sounds by label.

mod common;

use std::io::{Cursor, Write};
use std::path::Path;

use common::{local_build, package_tree};
use s2v_train::dataset::build::{BuildOptions, LABEL_COUNTS_CSV, build_default};
use s2v_train::dataset::licence_policy::WeightsLicence;
use s2v_train::dataset::notice::data_notice;
use s2v_train::dataset::{Dataset, Item, Split};

/// A sweeping tone of `seconds` at 16 kHz as WAV bytes.
fn wav(seconds: f64, hz: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    for i in 0..(seconds * 16_000.0) as usize {
        let t = i as f64 / 16_000.0;
        let v = (2.0 * std::f64::consts::PI * hz * t * (1.0 + 0.1 * t)).sin() * 0.5;
        writer.write_sample((v * 32_000.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
    bytes.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// OpenSFX's catalogue layout (see `packaged::read_sound_catalogue`).
fn catalogue(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let table_len = entries.len() * 8;
    let (mut table, mut body) = (Vec::new(), Vec::new());
    for (description, wav) in entries {
        table.extend(((table_len + body.len()) as u32 | 0x8000_0000).to_le_bytes());
        table.extend((wav.len() as u32).to_le_bytes());
        body.push(description.len() as u8 + 1);
        body.extend(description.as_bytes());
        body.push(0);
        body.extend(wav);
    }
    [table, body].concat()
}

/// A DXT1 texture of one colour (RGB565; 0xF800 is red), as 0 A.D.'s portraits are stored.
fn dds(side: u32, colour: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; 128];
    bytes[..4].copy_from_slice(b"DDS ");
    bytes[12..16].copy_from_slice(&side.to_le_bytes());
    bytes[16..20].copy_from_slice(&side.to_le_bytes());
    bytes[84..88].copy_from_slice(b"DXT1");
    for _ in 0..(side / 4) * (side / 4) {
        bytes.extend(colour.to_le_bytes());
        bytes.extend(colour.to_le_bytes());
        bytes.extend([0u8; 4]);
    }
    bytes
}

/// The games' files the table names, at their installed paths.
fn games_tree(root: &Path) {
    let simutrans = root.join("usr/share/games/simutrans/pak/sound");
    write(&simutrans.join("bus.wav"), &wav(1.0, 300.0));
    write(&simutrans.join("horse.wav"), &wav(1.5, 500.0));
    // 25 s of water: two 10 s clips, the rest dropped.
    write(&simutrans.join("Water.wav"), &wav(25.0, 90.0));
    // Not in the table: left out.
    write(&simutrans.join("forest.wav"), &wav(1.0, 700.0));
    write(
        &root.join("usr/share/doc/simutrans-pak64/copyright"),
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
          Files: *\nCopyright: 2004 Simutrans Team\nLicense: Artistic-1.0\n",
    );
    // MegaGlest ships one chicken in every tileset: kept once. Its horsemen are people: left out.
    let megaglest = root.join("usr/share/games/megaglest");
    for tileset in ["forest", "desert"] {
        write(
            &megaglest.join(format!("tilesets/{tileset}/sounds/chicken.wav")),
            &wav(1.0, 1200.0),
        );
    }
    write(
        &megaglest.join("techs/megapack/commondata/sounds/cow_ack1.wav"),
        &wav(1.0, 110.0),
    );
    write(
        &megaglest.join("techs/megapack/factions/egypt/units/horseman/sounds/horseman_ack1.wav"),
        &wav(1.0, 200.0),
    );
    // OpenSFX: each sound's licence is in its description; Toyland's are left out.
    write(
        &root.join("usr/share/games/openttd/baseset/opensfx/opensfx.cat"),
        &catalogue(&[
            (
                "\"Cow\". Original \"moo.wav\" by X. License: Creative Commons Zero 1.0.",
                wav(1.0, 120.0),
            ),
            (
                "\"Toyland: Comedy bus start (1)\". By Y. License: CC-BY 3.0.",
                wav(1.0, 400.0),
            ),
        ]),
    );
    // 0 A.D.: sounds and a portrait in one zip.
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("audio/actor/fauna/animal/cattle_01.ogg", wav(1.0, 100.0)),
        ("audio/actor/fauna/animal/horse_11.ogg", wav(1.0, 520.0)),
        (
            "art/textures/ui/session/portraits/gaia/fauna_cow.png.cached.dds",
            dds(8, 0xF800),
        ),
    ] {
        zip.start_file(name, stored).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    write(
        &root.join("usr/share/games/0ad/mods/public/public.zip"),
        &zip.finish().unwrap().into_inner(),
    );
    write(
        &root.join("usr/share/doc/0ad-data/copyright"),
        b"Files: *\nCopyright: 2010 Wildfire Games\nLicense: CC-BY-SA-3.0\n",
    );
}

fn labelled_build(out: &Path, unpacked: &Path) -> BuildOptions {
    BuildOptions {
        labelled_sources: true,
        ..local_build(out, unpacked)
    }
}

#[test]
fn labelled_sources_become_sounds_and_pictures_of_their_label() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    package_tree(&unpacked);
    games_tree(&unpacked);
    let out = dir.path().join("data");
    let summary = build_default(&labelled_build(&out, &unpacked)).unwrap();
    // The miniature has four of the packages: the others' places are reported, not read.
    assert!(
        summary.skipped.iter().all(|s| s.contains("not unpacked")),
        "{:?}",
        summary.skipped
    );
    assert!(
        summary
            .skipped
            .iter()
            .any(|s| s.starts_with("widelands-data:"))
    );

    let dataset = Dataset::open(&out).unwrap();
    let sound = |source_end: &str| -> Vec<&Item> {
        dataset
            .audio_only
            .iter()
            .filter(|i| i.source.ends_with(source_end))
            .collect()
    };
    let label_of = |source_end: &str| sound(source_end)[0].label.clone();
    assert_eq!(label_of("sound/bus.wav"), "bus");
    assert_eq!(label_of("sound/horse.wav"), "horse");
    assert_eq!(label_of("opensfx.cat!Cow"), "cow");
    assert_eq!(label_of("cattle_01.ogg"), "cow");
    assert_eq!(label_of("horse_11.ogg"), "horse");
    assert_eq!(label_of("cow_ack1.wav"), "cow");
    assert_eq!(sound("cow_ack1.wav")[0].category, "mammal");
    // Left out: unlisted, listed as no label, Toyland's, and the second copy of the chicken.
    for absent in ["forest.wav", "horseman_ack1.wav", "Comedy bus start (1)"] {
        assert!(sound(absent).is_empty(), "{absent}");
    }
    assert_eq!(sound("sounds/chicken.wav").len(), 1);
    assert_eq!(
        dataset.audio_only.len(),
        9,
        "8 files, the water in two clips"
    );

    // Two 10 s clips of the water, each 16 kHz mono WAV of the encoder's length.
    let water = sound("sound/Water.wav");
    assert_eq!(water.len(), 2);
    assert_ne!(water[0].name, water[1].name);
    for clip in &water {
        let reader = hound::WavReader::open(dataset.audio_only_audio(clip)).unwrap();
        assert_eq!(
            (reader.spec().sample_rate, reader.spec().channels),
            (16_000, 1)
        );
        assert_eq!(reader.duration(), 160_000);
    }

    // Licences: per file where the package states one, from the catalogue's description for OpenSFX.
    assert_eq!(
        sound("sound/bus.wav")[0].licence,
        "Artistic-1.0 (2004 Simutrans Team)"
    );
    assert_eq!(
        sound("opensfx.cat!Cow")[0].licence,
        "Original \"moo.wav\" by X. License: Creative Commons Zero 1.0."
    );
    assert_eq!(
        sound("cattle_01.ogg")[0].licence,
        "CC-BY-SA-3.0 (2010 Wildfire Games)"
    );

    // The portrait: an image-only picture of a cow, decoded from DXT1.
    let portrait = dataset
        .image_only
        .iter()
        .find(|i| i.source.ends_with("fauna_cow.png.cached.dds"))
        .expect("the portrait is read");
    assert_eq!(portrait.label, "cow");
    let pixels = image::open(dataset.image_only_image(portrait))
        .unwrap()
        .to_rgb8();
    let centre = pixels.get_pixel(64, 64);
    assert!(
        centre[0] > 240 && centre[1] < 20 && centre[2] < 20,
        "{centre:?}"
    );

    // The counts per label, for review.
    let counts = std::fs::read_to_string(out.join(LABEL_COUNTS_CSV)).unwrap();
    assert!(counts.starts_with("label,category,training sounds,training pictures\n"));
    let cow_row = counts.lines().find(|l| l.starts_with("cow,")).unwrap();
    let training_cows = dataset
        .audio_only
        .iter()
        .filter(|i| i.label == "cow" && i.split == Split::Train)
        .count();
    assert_eq!(
        cow_row,
        format!(
            "cow,mammal,{training_cows},{}",
            usize::from(portrait.split == Split::Train)
        )
    );
    assert_eq!(summary.per_label["cow"].0, training_cows);
}

#[test]
fn a_build_for_gpl_3_weights_leaves_out_what_the_gpl_cannot_carry() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    package_tree(&unpacked);
    games_tree(&unpacked);
    // Tux Paint's copyright names GPL-2 over a text that grants any later version, as the package does.
    write(
        &unpacked.join("usr/share/doc/tuxpaint-stamps-default/copyright"),
        b"Files: *\nCopyright: 2002-2022 Bill Kendrick\nLicense: GPL-2\n\nLicense: GPL-2\n \
          either version 2 of the License, or\n (at your option) any later version.\n",
    );
    let everything = dir.path().join("everything");
    build_default(&labelled_build(&everything, &unpacked)).unwrap();
    let out = dir.path().join("data");
    let options = BuildOptions {
        weights_licence: Some(WeightsLicence::Gpl3OrLater),
        ..labelled_build(&out, &unpacked)
    };
    let summary = build_default(&options).unwrap();

    let all = Dataset::open(&everything).unwrap();
    let kept = Dataset::open(&out).unwrap();
    let licences = |d: &Dataset| -> Vec<String> {
        let items = d.pairs.iter().chain(&d.image_only).chain(&d.audio_only);
        items.map(|i| i.licence.clone()).collect()
    };
    // 0 A.D.'s CC-BY-SA-3.0, Simutrans's Artistic-1.0 and MegaGlest's unknown licence (no copyright file
    // in the miniature) are left out; Tux Paint's GPL-2+ and OpenSFX's CC0 stay.
    for licence in licences(&kept) {
        assert!(
            licence == "GPL-2+" || licence.contains("Creative Commons Zero"),
            "{licence}"
        );
    }
    let refused = |d: &Dataset| {
        licences(d)
            .iter()
            .filter(|l| WeightsLicence::Gpl3OrLater.refusal(l).is_some())
            .count()
    };
    assert!(refused(&all) > 0);
    assert_eq!(
        summary.left_out.values().sum::<usize>(),
        refused(&all),
        "{:?}",
        summary.left_out
    );
    assert_eq!(
        summary.left_out["CC-BY-SA-3.0 does not allow weights under GPL-3.0-or-later"], 3,
        "two sounds and the portrait"
    );
    assert_eq!(licences(&kept).len() + refused(&all), licences(&all).len());
    // The left-out items' files are gone; the kept ones' are there.
    let files = |d: &Path| walk(d).len();
    assert_eq!(files(&out), licences(&kept).len() + kept.pairs.len());
    // Weights trained on what is kept can go out under GPL-3.0-or-later.
    let notice = data_notice(&kept, Some(&unpacked));
    // (GPL-2+ is the one share-alike licence left, so it is the weights'.)
    assert!(
        notice.contains("the weights are distributed under GPL-2+."),
        "{notice}"
    );
    assert!(!notice.contains("must not be distributed"), "{notice}");

    // The project's own licence refuses the GPL'd stamps, so no pair would be left: a clear error.
    let options = BuildOptions {
        weights_licence: Some(WeightsLicence::MitOrApache),
        ..labelled_build(&dir.path().join("permissive"), &unpacked)
    };
    let error = build_default(&options).unwrap_err().to_string();
    assert!(
        error.contains("no pair of a sound and its picture is under a licence that allows weights under MIT OR Apache-2.0"),
        "{error}"
    );
}

/// The media files under `dir` (pictures and sounds), recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jpg" | "wav")
        ) {
            found.push(path);
        }
    }
    found
}

#[test]
fn held_out_groups_hold_out_every_item_of_the_thing() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    package_tree(&unpacked);
    games_tree(&unpacked);
    let out = dir.path().join("data");
    build_default(&labelled_build(&out, &unpacked)).unwrap();
    let dataset = Dataset::open(&out).unwrap();
    let everything: Vec<&Item> = dataset
        .pairs
        .iter()
        .chain(&dataset.audio_only)
        .chain(&dataset.image_only)
        .collect();
    let group = s2v_train::dataset::build::group_of;
    let held: Vec<String> = everything
        .iter()
        .filter(|i| i.split == Split::Test)
        .map(|i| group(i))
        .collect();
    assert!(!held.is_empty());
    for item in &everything {
        if held.contains(&group(item)) {
            assert_eq!(
                item.split,
                Split::Test,
                "{} is of a held-out group",
                item.name
            );
        }
    }
}

#[test]
fn training_pairs_sounds_without_a_picture_with_pictures_of_their_label() {
    use burn::backend::{Autodiff, Flex};
    use s2v_train::trainer::{
        AUDIO_ENCODER_FILE, IMAGE_NEIGHBOURS_FILE, Preset, Recipe, Stage, TrainOptions, train,
    };
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    package_tree(&unpacked);
    games_tree(&unpacked);
    let data = dir.path().join("data");
    build_default(&labelled_build(&data, &unpacked)).unwrap();
    let mut recipe = Recipe::preset(Preset::Tiny);
    (recipe.image_steps, recipe.audio_steps) = (4, 4);
    let out = dir.path().join("run");
    let options = TrainOptions {
        data,
        out: out.clone(),
        recipe,
        seed: 1,
        max_steps_per_call: None,
        deadline: None,
        stage_seconds: None,
        only: Some(Stage::AudioEncoder),
        image_encoder: None,
        fresh_discriminator: false,
        target_embeddings: None,
    };
    assert!(train::<Autodiff<Flex>>(&options, &Default::default()).unwrap());
    assert!(out.join(AUDIO_ENCODER_FILE).exists());
    // The image encoder's neighbour measure, by fine label, is written as soon as its stage ends.
    let measure: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(IMAGE_NEIGHBOURS_FILE)).unwrap())
            .unwrap();
    let share = measure["held_out_pictures"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share), "{measure}");
    assert!(measure["held_out_picture_count"].as_u64().unwrap() > 0);
}
