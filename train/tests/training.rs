//! The three training stages at toy size: checkpoints, resuming exactly where a run stopped, time budgets, a
//! frozen image encoder, and the shipped default model's architecture.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use common::built_package_tree;
use s2v_models::discriminator::DiscriminatorConfig;
use s2v_models::{AudioEncoder, Generator, ImageEncoder, NetworkModule, load_checkpoint};
use s2v_train::trainer::{
    AUDIO_ENCODER_FILE, GENERATOR_FILE, IMAGE_ENCODER_FILE, Preset, Recipe, Recorder, Stage,
    StageProgress, TrainOptions, train,
};

type B = Autodiff<Flex>;

/// Every tensor of two safetensors files is bit-identical (the files' metadata may be ordered differently).
/// A run of `recipe` on `data` into `out`, from seed 7, to the end in one call, with nothing else set.
fn run_options(data: &Path, out: &Path, recipe: Recipe) -> TrainOptions {
    TrainOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        recipe,
        seed: 7,
        max_steps_per_call: None,
        deadline: None,
        stage_seconds: None,
        only: None,
        image_encoder: None,
        fresh_discriminator: false,
        target_embeddings: None,
    }
}

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
    let optimiser = AdamConfig::new()
        .init::<B, Discriminator<B>>()
        .load_record(record);
    let mut states = optimiser.to_record();
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
    let data = built_package_tree(dir.path());
    let recipe = Recipe::preset(Preset::Tiny);
    let device = Default::default();
    let options = |out: &Path, max_steps: Option<usize>| TrainOptions {
        max_steps_per_call: max_steps,
        ..run_options(&data, out, recipe.clone())
    };

    // Interrupted after 5 steps, then every 15, in the middle of every stage and off its checkpoint interval.
    let resumed = dir.path().join("resumed");
    assert!(!StageProgress::any_saved(&resumed));
    assert!(!train::<B>(&options(&resumed, Some(5)), &device).unwrap());
    assert!(StageProgress::any_saved(&resumed));
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
    let (first, last) = first_and_last_loss(&image, "contrastive");
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

    // A recipe of another width takes the given encoder's (16-d) instead.
    let mut wider = recipe.clone();
    wider.generator.feature_dim += 1;
    let followed = TrainOptions {
        recipe: wider,
        ..given.clone()
    };
    assert!(train::<B>(&followed, &device).unwrap());
    let written: Recipe =
        serde_json::from_str(&std::fs::read_to_string(frozen.join("recipe.json")).unwrap())
            .unwrap();
    assert_eq!(written.generator.feature_dim, recipe.generator.feature_dim);

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

/// A frozen encoder of another architecture, input size and feature width than the recipe's (the
/// EfficientNet-Lite parity fixture: 224 px, 40-d, against the tiny preset's 64 px and 16-d): the pictures are
/// encoded at its size, and the generator, discriminator and audio encoder are made for its width.
#[test]
fn a_frozen_pretrained_encoder_sets_the_conditioning_width() {
    let dir = tempfile::tempdir().unwrap();
    let data = built_package_tree(dir.path());
    let device = Default::default();
    let fixture = s2v_tests::checkout().join("tests/data/efficientnet_lite/efficientnet_lite.pth");
    let encoder: ImageEncoder<Flex> = load_checkpoint(&fixture, &device).unwrap();
    let (size, width) = (encoder.input_size(), encoder.feature_dim());
    let mut recipe = Recipe::preset(Preset::Tiny);
    assert_ne!(
        (size, width),
        (recipe.resolution, recipe.generator.feature_dim)
    );
    [recipe.gan_steps, recipe.audio_steps] = [2, 2];
    let out = dir.path().join("pretrained");
    let options = TrainOptions {
        image_encoder: Some(fixture),
        ..run_options(&data, &out, recipe)
    };
    assert!(train::<B>(&options, &device).unwrap());
    let g: Generator<Flex> = load_checkpoint(&out.join(GENERATOR_FILE), &device).unwrap();
    assert_eq!(g.config().feature_dim, width);
    assert_eq!(g.config().resolution(), 64);
    let a: AudioEncoder<Flex> = load_checkpoint(&out.join(AUDIO_ENCODER_FILE), &device).unwrap();
    assert_eq!(a.config().embedding_dim, width);
    let written: Recipe =
        serde_json::from_str(&std::fs::read_to_string(out.join("recipe.json")).unwrap()).unwrap();
    assert_eq!(written.discriminator.feature_dim, width);
}

/// With `image_projection`, a linear map of the frozen encoder's features is trained on the labelled training
/// pictures and conditions everything; the cache keeps the encoder's own features. A build without labels
/// cannot train one, and says so.
#[test]
fn a_projection_of_a_frozen_encoder_is_trained_on_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    common::package_tree(&unpacked);
    let data = dir.path().join("data");
    s2v_train::dataset::build::build_default(&s2v_train::dataset::build::BuildOptions {
        labelled_sources: true,
        ..common::local_build(&data, &unpacked)
    })
    .unwrap();
    let device = Default::default();
    let fixture = s2v_tests::checkout().join("tests/data/efficientnet_lite/efficientnet_lite.pth");
    let mut recipe = Recipe::preset(Preset::Tiny);
    [recipe.gan_steps, recipe.audio_steps] = [1, 1];
    recipe.image_projection = Some(4);
    let out = dir.path().join("projected");
    let options = TrainOptions {
        image_encoder: Some(fixture.clone()),
        ..run_options(&data, &out, recipe)
    };
    assert!(train::<B>(&options, &device).unwrap());
    let encoder: ImageEncoder<Flex> =
        load_checkpoint(&out.join(IMAGE_ENCODER_FILE), &device).unwrap();
    assert_eq!(encoder.feature_dim(), 4);
    let g: Generator<Flex> = load_checkpoint(&out.join(GENERATOR_FILE), &device).unwrap();
    assert_eq!(g.config().feature_dim, 4);
    let cached: Vec<_> = std::fs::read_dir(data.join("image-features"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "one cache, of the encoder's own features");
    assert!(out.join("image_encoder_neighbours.json").is_file());

    let plain = common::built_package_tree(&dir.path().join("plain"));
    let error = train::<B>(
        &TrainOptions {
            data: plain,
            out: dir.path().join("refused"),
            ..options
        },
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("labelled training pictures"), "{error}");
}

#[test]
fn sound2visions_encoder_trains_against_given_embeddings_of_the_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let data = built_package_tree(dir.path());
    let listed = s2v_train::dataset::Dataset::open(&data)
        .unwrap()
        .listed_pictures()
        .len();
    let write = |name: &str, rows: usize| {
        let path = dir.path().join(name);
        let values: Vec<f32> = (0..rows * 8)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
            .collect();
        let array = ndarray::Array2::from_shape_vec((rows, 8), values).unwrap();
        ndarray_npy::write_npy(&path, &array).unwrap();
        path
    };
    let mut recipe = Recipe::preset(Preset::Tiny);
    recipe.audio_steps = 3;
    let options = |embeddings: std::path::PathBuf, out: &str| TrainOptions {
        seed: 1,
        target_embeddings: Some(embeddings),
        ..run_options(&data, &dir.path().join(out), recipe.clone())
    };
    let device = Default::default();
    assert!(train::<B>(&options(write("e.npy", listed), "run"), &device).unwrap());
    let encoder: AudioEncoder<Flex> = load_checkpoint(
        &dir.path().join("run").join(AUDIO_ENCODER_FILE),
        &Default::default(),
    )
    .unwrap();
    let config = encoder.config();
    assert!(config.fc2);
    assert_eq!(config.embedding_dim, 8);
    // Only the audio encoder trains: no image encoder, no generator.
    assert!(!dir.path().join("run").join(IMAGE_ENCODER_FILE).exists());
    assert_eq!(
        progress(&dir.path().join("run"), Stage::AudioEncoder).step,
        3
    );
    // A table that does not have a row per listed picture is refused, with both counts.
    let error = train::<B>(&options(write("short.npy", listed - 1), "short"), &device).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("{} rows", listed - 1))
            && message.contains(&format!("lists {listed} pictures")),
        "{message}"
    );
}
