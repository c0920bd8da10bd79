//! `s2v eval` end to end on a toy model: every held-out sound is judged in every row of the report, the
//! figures are drawn at the sizes their contents need, a second run (which reuses the classifier it saved)
//! gives the same report, and the truncation trick reaches every generated picture.
//!
//! The model's networks are the tiny preset's, untrained: what is checked is the evaluation's bookkeeping,
//! which does not depend on how good the pictures are.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use common::{built_package_tree, local_build, package_tree};
use s2v_models::checkpoint::save_native;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, ImageEncoderConfig, NetworkModule};
use s2v_train::dataset::build::{BuildOptions, build_default};
use s2v_train::dataset::{Dataset, Split};
use s2v_train::eval::neighbours::SoundNeighbours;
use s2v_train::eval::{EvalOptions, evaluate};
use s2v_train::image_features::CACHE_DIR;
use s2v_train::trainer::{AUDIO_ENCODER_FILE, GENERATOR_FILE, IMAGE_ENCODER_FILE, Preset, Recipe};

type B = Autodiff<Flex>;

/// The tests of this file one at a time: the backend's random numbers are one stream per process, and the
/// untrained models must be the same in every run (some draws respond to the noise too weakly to show in
/// an 8-bit picture, which would make the truncation check below pass or fail by chance).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The tiny preset's three networks, freshly initialised, written where `s2v eval --model` looks.
fn untrained_tiny_model(dir: &Path) {
    untrained_model(dir, Recipe::preset(Preset::Tiny));
}

fn untrained_model(dir: &Path, recipe: Recipe) {
    let device = Default::default();
    <Flex as burn::tensor::backend::Backend>::seed(&device, 5);
    std::fs::create_dir_all(dir).unwrap();
    let image = ImageEncoder::<Flex>::init(&recipe.image_encoder, &device).unwrap();
    save_native(&image, &dir.join(IMAGE_ENCODER_FILE), false).unwrap();
    let generator = Generator::<Flex>::init(&recipe.generator, &device).unwrap();
    save_native(&generator, &dir.join(GENERATOR_FILE), false).unwrap();
    let audio = AudioEncoder::<Flex>::init(&recipe.audio_encoder, &device).unwrap();
    save_native(&audio, &dir.join(AUDIO_ENCODER_FILE), false).unwrap();
}

#[test]
fn evaluation_judges_every_held_out_sound() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    package_tree(&dir.path().join("unpacked"));
    let data = dir.path().join("data");
    build_default(&BuildOptions {
        labelled_sources: true,
        ..local_build(&data, &dir.path().join("unpacked"))
    })
    .unwrap();
    let model = dir.path().join("model");
    untrained_tiny_model(&model);
    let out = dir.path().join("eval");
    let options = EvalOptions {
        data: data.clone(),
        model: Some(model),
        out: out.clone(),
        seed: 3,
        samples: 2,
        classifier_steps: 8,
        truncation: None,
    };
    let report = evaluate::<B>(&options, &Default::default()).unwrap();

    let dataset = Dataset::open(&data).unwrap();
    // The miniature's sounds have fine labels: the classes are the training pictures' labels.
    let mut classes: Vec<String> = dataset
        .training_images()
        .iter()
        .map(|(_, i)| i.label.clone())
        .filter(|label| !label.is_empty())
        .collect();
    classes.sort();
    classes.dedup();
    assert_eq!(report.labelling, "fine labels");
    assert_eq!(report.classes, classes);
    let held_out: Vec<_> = dataset
        .sounds_in(Split::Test)
        .into_iter()
        .map(|(_, item)| item)
        .filter(|item| classes.contains(&item.label))
        .collect();
    assert!(held_out.len() >= 3, "one songbird, dog and violin held out");
    let held_out_pictures = dataset
        .held_out_images()
        .iter()
        .filter(|(_, item)| classes.contains(&item.label))
        .count();
    assert_eq!(report.held_out_sounds, held_out.len());
    assert_eq!(report.held_out_pictures, held_out_pictures);
    assert_eq!(report.chance.r1, 1.0 / classes.len() as f64);
    for (row, judged) in [
        (&report.generated, 2 * held_out.len()),
        (&report.generated_from_pictures, 2 * held_out_pictures),
        (&report.generated_across_gap, 2 * held_out.len()),
        (&report.retrieval_baseline, held_out.len()),
        (&report.real_pictures, held_out_pictures),
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
        neighbours.pictures.training_picture_count,
        dataset
            .training_images()
            .iter()
            .filter(|(_, i)| !i.label.is_empty())
            .count()
    );
    assert_eq!(
        neighbours.pictures.held_out_picture_count,
        held_out_pictures
    );
    for (share, queries) in [
        (
            neighbours.pictures.training_pictures,
            neighbours.pictures.training_picture_count,
        ),
        (
            neighbours.pictures.training_pictures_by_pixels,
            neighbours.pictures.training_picture_count,
        ),
        (neighbours.pictures.held_out_pictures, held_out_pictures),
        (
            neighbours.pictures.held_out_pictures_by_pixels,
            held_out_pictures,
        ),
        (neighbours.held_out_sounds, held_out.len()),
        (neighbours.held_out_sounds_to_pictures, held_out.len()),
    ] {
        let hits = share * queries as f64;
        assert!(
            (0.0..=1.0).contains(&share) && (hits - hits.round()).abs() < 1e-9,
            "{neighbours:?}"
        );
    }
    // Sound by sound: each held-out sound once, with the neighbours the two sound shares count.
    let mut names: Vec<&str> = neighbours.sounds.iter().map(|s| s.name.as_str()).collect();
    let mut expected: Vec<&str> = held_out.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for sound in &neighbours.sounds {
        let item = held_out.iter().find(|i| i.name == sound.name).unwrap();
        assert_eq!(sound.class, item.label, "{sound:?}");
        assert!(sound.nearest_sound.is_some() && sound.nearest_picture.is_some());
    }
    let hits = |pick: fn(&SoundNeighbours) -> Option<&String>| {
        let sounds = &neighbours.sounds;
        sounds.iter().filter(|s| pick(s) == Some(&s.class)).count() as f64 / sounds.len() as f64
    };
    assert_eq!(
        hits(|s| s.nearest_sound.as_ref()),
        neighbours.held_out_sounds
    );
    assert_eq!(
        hits(|s| s.nearest_picture.as_ref()),
        neighbours.held_out_sounds_to_pictures
    );
    let gains: Vec<f64> = report.volume.iter().map(|v| v.0).collect();
    assert_eq!(gains, [0.1, 0.3, 1.0, 3.0]);
    let mixable = (0..held_out.len())
        .flat_map(|i| (i + 1..held_out.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| held_out[i].label != held_out[j].label)
        .count();
    assert_eq!(report.mixed_pairs, mixable.min(12));

    // The grid has a row per class with a held-out sound: gutter 4, tiles of 64 px drawn at twice the size.
    let rows = classes
        .iter()
        .filter(|c| held_out.iter().any(|i| &i.label == *c))
        .count() as u32;
    let grid = image::open(out.join("grid.png")).unwrap();
    assert_eq!(grid.height(), 4 + rows * (128 + 4));
    // Beside it, each row's class, in the order of the report's classes.
    let row_classes = std::fs::read_to_string(out.join("grid.txt")).unwrap();
    let expected: Vec<&str> = classes
        .iter()
        .filter(|c| held_out.iter().any(|i| &i.label == *c))
        .map(String::as_str)
        .collect();
    assert_eq!(row_classes.lines().collect::<Vec<_>>(), expected);
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

#[test]
fn a_build_without_fine_labels_is_judged_by_category() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = built_package_tree(dir.path());
    let model = dir.path().join("model");
    untrained_tiny_model(&model);
    let options = EvalOptions {
        data: data.clone(),
        model: Some(model),
        out: dir.path().join("eval"),
        seed: 3,
        samples: 1,
        classifier_steps: 2,
        truncation: None,
    };
    let report = evaluate::<B>(&options, &Default::default()).unwrap();
    let dataset = Dataset::open(&data).unwrap();
    assert_eq!(report.labelling, "categories");
    assert_eq!(report.classes, dataset.categories());
    assert_eq!(
        report.held_out_sounds,
        dataset.pairs_in(Split::Test).count()
    );
}

/// A pretrained `f_V` reads larger pictures than the generator makes (EfficientNet-Lite2 260 px, the generator
/// 64 px): everything judged is at the generator's size, and the encoder's features are computed once, into the
/// data set's cache.
#[test]
fn an_image_encoder_of_another_input_size_is_judged_at_the_generators_size() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    package_tree(&dir.path().join("unpacked"));
    let data = dir.path().join("data");
    build_default(&BuildOptions {
        labelled_sources: true,
        ..local_build(&data, &dir.path().join("unpacked"))
    })
    .unwrap();
    let mut recipe = Recipe::preset(Preset::Tiny);
    let ImageEncoderConfig::ResNet(encoder) = &mut recipe.image_encoder else {
        unreachable!("the tiny preset's encoder is a ResNet")
    };
    encoder.input_size = 96;
    assert_eq!(recipe.resolution, 64);
    let model = dir.path().join("model");
    untrained_model(&model, recipe);
    let out = dir.path().join("eval");
    let options = EvalOptions {
        data: data.clone(),
        model: Some(model),
        out: out.clone(),
        seed: 1,
        samples: 1,
        classifier_steps: 2,
        truncation: None,
    };
    let report = evaluate::<B>(&options, &Default::default()).unwrap();
    assert!(report.real_pictures.judged > 0 && report.generated.judged > 0);
    let rows = report
        .classes
        .iter()
        .filter(|c| {
            Dataset::open(&data)
                .unwrap()
                .sounds_in(Split::Test)
                .iter()
                .any(|(_, i)| &i.label == *c)
        })
        .count() as u32;
    let grid = image::open(out.join("grid.png")).unwrap();
    assert_eq!(grid.height(), 4 + rows * (128 + 4), "64 px tiles");

    let cache: Vec<_> = std::fs::read_dir(data.join(CACHE_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let again = evaluate::<B>(&options, &Default::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&report).unwrap(),
        "the cached features are the features"
    );
}
