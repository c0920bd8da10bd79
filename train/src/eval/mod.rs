//! `s2v eval`: how well a model's pictures of held-out sounds show what the sound is: its fine label (its
//! category, for data sets built before labels).
//!
//! A classifier trained on the training pictures alone judges (i) images generated from held-out sounds (and,
//! to judge the generator alone, from the held-out pictures' image features), (ii) the retrieval baseline
//! (the training picture nearest to the audio feature) and (iii) the held-out pictures themselves (the upper
//! bound). Beside R@1/R@5 it measures the modality gap between audio and visual features (Sound2Vision
//! Sec. 4.4) and, without the classifier, how often each encoder's nearest neighbours share a query's class
//! (`neighbours`), and draws a grid with a row per class, the volume and mixing controls, and a 2-D plot of
//! the features.

mod classifier;
pub mod image_encoder;
pub mod labelling;
pub mod neighbours;
pub mod plots;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use s2v_models::generator::sample_noise;
use s2v_models::{AudioEncoder, Generator, ImageEncoder};
use s2v_shared::audio::{
    CLIP_SAMPLES, FREQ_BINS, TIME_FRAMES, apply_gain, clip_unit, log_spectrogram, mix,
};
use serde::Serialize;

use crate::dataset::{Dataset, Item, Split};
use crate::image_features::{CACHE_DIR, FrozenFeatures};
use crate::trainer::data::{PictureBank, SoundBank};
use crate::trainer::{AUDIO_ENCODER_FILE, GENERATOR_FILE, IMAGE_ENCODER_FILE};
use classifier::{Classifier, classify, rank_of};
use labelling::Labelling;
use neighbours::{
    ClassifiedPictures, Neighbours, SoundNeighbours, nearest, nearest_labels, picture_neighbours,
};
use plots::Cell;
use s2v_serving::networks::{encode_rows, load_network};

/// `s2v eval`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalOptions {
    #[arg(long)]
    pub data: PathBuf,
    /// A folder with the three networks (`s2v train --out`); the embedded default model when left out.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// report.json and the pictures go here.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images generated per held-out sound. With 32 the noise of the generated pictures themselves is small
    /// beside that of the held-out sounds.
    #[arg(long, default_value_t = 32)]
    pub samples: usize,
    /// Training steps of the judging classifier (reused from --out when it is already there).
    #[arg(long, default_value_t = 400)]
    pub classifier_steps: usize,
    /// Truncation trick for every generated picture: redraw noise values outside [-T, T].
    #[arg(long)]
    pub truncation: Option<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    pub r1: f64,
    pub r5: f64,
    pub judged: usize,
    /// 95 % percentile-bootstrap intervals of `r1` and `r5` over the held-out sounds (`None` for chance).
    pub r1_interval: Option<[f64; 2]>,
    pub r5_interval: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Geometry {
    /// `|mean(a) - mean(v)|` over L2-normalised features.
    pub gap: f64,
    /// Mean `|cos(gap, a_i - mean(a))|` and the same for pictures: 0 when the gap is orthogonal to the spread
    /// of each modality.
    pub gap_alignment_audio: f64,
    pub gap_alignment_visual: f64,
    /// `|mean(a)|` and `|mean(v)|`: 0 for features centred on the origin, 1 for all features equal.
    pub audio_centroid_norm: f64,
    pub visual_centroid_norm: f64,
    pub paired_cosine: f64,
    pub unpaired_cosine: f64,
    pub pairs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What the classes are: `fine labels`, or `categories` for data sets built before labels.
    pub labelling: String,
    /// The judged classes: the fine labels of the training pictures, or the paired items' categories.
    pub classes: Vec<String>,
    /// Held-out sounds of a judged class (pairs and sounds without a picture).
    pub held_out_sounds: usize,
    /// Held-out pictures of a judged class: the real pictures' row.
    pub held_out_pictures: usize,
    pub samples_per_sound: usize,
    /// The truncation the pictures were generated with (`None`: untruncated standard normal noise).
    pub truncation: Option<f32>,
    pub chance: Recall,
    pub generated: Recall,
    /// Images generated from the held-out pictures' own image features: the generator judged apart from the
    /// audio encoder.
    pub generated_from_pictures: Recall,
    /// Images generated from the held-out sounds' L2-normalised features moved across the modality gap (plus
    /// the training pairs' mean picture feature minus their mean sound feature): a diagnostic of what the gap
    /// itself costs the sound rows, not what the product generates from.
    pub generated_across_gap: Recall,
    pub retrieval_baseline: Recall,
    pub real_pictures: Recall,
    pub geometry: Geometry,
    /// How often the encoders' nearest neighbours share the query's class, beside raw pixels.
    pub neighbours: Neighbours,
    /// Per gain: the classifier's mean probability of the sound's category, and the share of non-white
    /// pixels (how much of the picture the object covers), over `samples_per_sound` images per held-out sound.
    pub volume: Vec<(f64, f64, f64)>,
    /// Mixed pairs of held-out sounds of two categories: the share of images whose top two guesses hold
    /// both categories, and whose top guess is one of them.
    pub mixing_both_in_top2: f64,
    pub mixing_either_top1: f64,
    pub mixed_pairs: usize,
}

/// `s2v eval` on the backend `--device` picks (autodiff only trains the classifier).
pub struct EvalJob(pub EvalOptions);

impl s2v_serving::device::OnBackend for EvalJob {
    type Output = Report;

    fn run<B: Backend>(self, device: B::Device) -> Result<Report> {
        evaluate::<burn::backend::Autodiff<B>>(&self.0, &device)
    }
}

struct Networks<B: Backend> {
    /// `f_V`: the held-out pictures' features, and the retrieval baseline's library.
    image: ImageEncoder<B>,
    generator: Generator<B>,
    audio: AudioEncoder<B>,
}

fn load_networks<B: Backend>(model: &Option<PathBuf>, device: &B::Device) -> Result<Networks<B>> {
    let file = |name: &str| model.as_ref().map(|dir| dir.join(name));
    let networks = Networks {
        image: load_network(file(IMAGE_ENCODER_FILE).as_deref(), device)?,
        generator: load_network(file(GENERATOR_FILE).as_deref(), device)?,
        audio: load_network(file(AUDIO_ENCODER_FILE).as_deref(), device)?,
    };
    Ok(networks)
}

/// The held-out sounds and pictures that have a judged class, read; each sound's own picture where its item
/// has one (a pair), else none (a sound of the audio-only set).
struct HeldOut<'a> {
    sounds: Vec<&'a Item>,
    sound_bank: SoundBank,
    sound_classes: Vec<usize>,
    /// Index into `pictures` of each sound's own picture.
    own_pictures: Vec<Option<usize>>,
    pictures: Vec<&'a Item>,
    picture_files: Vec<PathBuf>,
    picture_bank: PictureBank,
    picture_classes: Vec<usize>,
}

/// Items of one split with their file and the index of their class among the judged ones.
type Classified<'a> = Vec<(PathBuf, &'a Item, usize)>;

fn with_class_index<'a>(
    items: Vec<(PathBuf, &'a Item)>,
    labelling: Labelling,
    classes: &[String],
) -> Classified<'a> {
    items
        .into_iter()
        .filter_map(|(path, item)| {
            let class = labelling.class_of(item)?;
            let index = classes.iter().position(|c| c == class)?;
            Some((path, item, index))
        })
        .collect()
}

impl<'a> HeldOut<'a> {
    fn load(
        dataset: &'a Dataset,
        labelling: Labelling,
        classes: &[String],
        size: usize,
    ) -> Result<Self> {
        let sounds = with_class_index(dataset.sounds_in(Split::Test), labelling, classes);
        let pictures = with_class_index(dataset.held_out_images(), labelling, classes);
        anyhow::ensure!(
            !sounds.is_empty() && !pictures.is_empty(),
            "the data set holds {} held-out sounds and {} held-out pictures of a class its training \
             pictures show (by {}): nothing to judge",
            sounds.len(),
            pictures.len(),
            labelling.name()
        );
        let own_pictures = sounds
            .iter()
            .map(|(_, sound, _)| {
                pictures
                    .iter()
                    .position(|(_, picture, _)| picture.name == sound.name)
            })
            .collect();
        Ok(Self {
            sound_bank: SoundBank::load(sounds.iter().map(|(path, _, _)| path.as_path()))?,
            picture_bank: PictureBank::load(
                pictures.iter().map(|(path, _, _)| path.as_path()),
                size,
            )?,
            sound_classes: sounds.iter().map(|(_, _, class)| *class).collect(),
            picture_files: pictures.iter().map(|(path, _, _)| path.clone()).collect(),
            picture_classes: pictures.iter().map(|(_, _, class)| *class).collect(),
            sounds: sounds.into_iter().map(|(_, item, _)| item).collect(),
            pictures: pictures.into_iter().map(|(_, item, _)| item).collect(),
            own_pictures,
        })
    }

    /// Sound `i`'s own picture as a grid cell (as the generator draws, [-1, 1]); blank without one.
    fn own_cell(&self, i: usize) -> Cell {
        self.own_pictures[i].map(|p| self.picture_bank.generator_pixels(p, false))
    }
}

/// The training pairs, a sound with its own picture: the modality gap is measured on them.
struct TrainingPairs {
    sounds: SoundBank,
    picture_files: Vec<PathBuf>,
}

impl TrainingPairs {
    fn load(dataset: &Dataset) -> Result<Self> {
        let pairs: Vec<&Item> = dataset.pairs_in(Split::Train).collect();
        let sound_files: Vec<PathBuf> = pairs.iter().map(|i| dataset.pair_audio(i)).collect();
        Ok(Self {
            sounds: SoundBank::load(sound_files.iter().map(PathBuf::as_path))?,
            picture_files: pairs.iter().map(|i| dataset.pair_image(i)).collect(),
        })
    }
}

/// The features every measure starts from. The `_unit` rows are L2-normalised (the generator normalises its
/// input itself, so the raw rows are what it is given).
struct Features {
    test_audio: Vec<Vec<f32>>,
    test_visual: Vec<Vec<f32>>,
    test_audio_unit: Vec<Vec<f32>>,
    test_visual_unit: Vec<Vec<f32>>,
    pair_audio_unit: Vec<Vec<f32>>,
    pair_visual_unit: Vec<Vec<f32>>,
}

/// What an evaluation works with: the model and its judge.
struct Judging<'a, B: Backend> {
    options: &'a EvalOptions,
    device: &'a B::Device,
    generator: Generator<B>,
    audio: AudioEncoder<B>,
    judge: Classifier<B>,
    size: usize,
}

impl<B: Backend> Judging<'_, B> {
    fn audio_features(&self, waves: &[Vec<f64>]) -> Result<Vec<Vec<f32>>> {
        encode_rows(
            waves.len(),
            [1, FREQ_BINS, TIME_FRAMES],
            8,
            self.device,
            |i| Ok(log_spectrogram(&waves[i])?.data),
            |x| self.audio.forward(x),
        )
    }

    fn features(
        &self,
        held_out: &HeldOut,
        pairs: &TrainingPairs,
        visual: &mut FrozenFeatures<B>,
    ) -> Result<Features> {
        let test_audio = self.audio_features(&held_out.sound_bank.waveforms)?;
        let test_visual = visual.of(&held_out.picture_files, false)?;
        Ok(Features {
            test_audio_unit: normalised(&test_audio),
            test_visual_unit: normalised(&test_visual),
            pair_audio_unit: normalised(&self.audio_features(&pairs.sounds.waveforms)?),
            pair_visual_unit: normalised(&visual.of(&pairs.picture_files, false)?),
            test_audio,
            test_visual,
        })
    }

    /// `count` pictures of one feature, in [-1, 1], from noise drawn with `seed`.
    fn generate(&self, feature: &[f32], count: usize, seed: u64) -> Result<Vec<Vec<f32>>> {
        let dim_z = self.generator.config.dim_z();
        let z = sample_noise(seed, count, dim_z, self.options.truncation)?;
        let z = Tensor::<B, 2>::from_data(TensorData::new(z, [count, dim_z]), self.device);
        let f: Vec<f32> = (0..count).flat_map(|_| feature.iter().copied()).collect();
        let f = Tensor::from_data(TensorData::new(f, [count, feature.len()]), self.device);
        let values = self
            .generator
            .forward(z, f)
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(values
            .chunks(3 * self.size * self.size)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// `samples` pictures of each row's feature, with the row's class for each.
    fn generate_all(
        &self,
        features: &[Vec<f32>],
        classes: &[usize],
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let samples = self.samples();
        let mut images = Vec::new();
        let mut image_classes = Vec::new();
        for (i, feature) in features.iter().enumerate() {
            for image in self.generate(feature, samples, self.options.seed + i as u64)? {
                images.push(image);
                image_classes.push(classes[i]);
            }
        }
        Ok((images, image_classes))
    }

    /// The judge's recall of pictures made in runs of `per_row` per row.
    fn recall(&self, images: &[Vec<f32>], classes: &[usize], per_row: usize) -> Result<Recall> {
        let logits = classify(&self.judge, images, self.size, self.device)?;
        Ok(recall(&logits, classes, per_row, self.options.seed))
    }

    /// Generates from each row's feature and judges the pictures: the pictures and their recall.
    fn generated_recall(
        &self,
        features: &[Vec<f32>],
        classes: &[usize],
    ) -> Result<(Vec<Vec<f32>>, Recall)> {
        let (images, image_classes) = self.generate_all(features, classes)?;
        let recall = self.recall(&images, &image_classes, self.samples())?;
        Ok((images, recall))
    }

    fn samples(&self) -> usize {
        self.options.samples.max(1)
    }
}

/// The classes the evaluation judges: the fine labels of the training pictures, or (for data sets built
/// before labels) the paired items' categories.
fn judged_classes(dataset: &Dataset, labelling: Labelling) -> Vec<String> {
    match labelling {
        Labelling::Categories => dataset.categories(),
        Labelling::FineLabels => {
            let training = dataset.training_images();
            let labels: std::collections::BTreeSet<String> = training
                .iter()
                .filter_map(|(_, item)| labelling.class_of(item).map(str::to_string))
                .collect();
            labels.into_iter().collect()
        }
    }
}

pub fn evaluate<B: AutodiffBackend>(options: &EvalOptions, device: &B::Device) -> Result<Report> {
    // Refused before anything is loaded or trained.
    s2v_models::generator::check_truncation(options.truncation)?;
    let dataset = Dataset::open(&options.data)?;
    std::fs::create_dir_all(&options.out)?;
    let labelling = Labelling::of(&dataset);
    let classes = judged_classes(&dataset, labelling);
    let nets = load_networks::<B::InnerBackend>(&options.model, device)?;
    // Everything judged is at the generator's resolution; `f_V` reads the picture files at its own.
    let size = nets.generator.config.resolution();
    let training = dataset.training_images();
    let judge = train_judge::<B>(options, labelling, &training, &classes, size, device)?;
    let held_out = HeldOut::load(&dataset, labelling, &classes, size)?;
    let pairs = TrainingPairs::load(&dataset)?;
    let (image_encoder, generator, audio) = (nets.image, nets.generator, nets.audio);
    let mut visual = FrozenFeatures::cached(&image_encoder, &options.data.join(CACHE_DIR), device);
    let judging = Judging {
        options,
        device,
        generator,
        audio,
        judge,
        size,
    };
    let features = judging.features(&held_out, &pairs, &mut visual)?;
    let sound_classes = &held_out.sound_classes;

    // (i) generated pictures of held-out sounds.
    let (generated, generated_recall) =
        judging.generated_recall(&features.test_audio, sound_classes)?;
    // (i b) generated from the held-out pictures' image features: what the generator makes of `f_V`'s
    // features, which bounds what it can make of sounds aligned to them.
    let (_, from_pictures_recall) =
        judging.generated_recall(&features.test_visual, &held_out.picture_classes)?;
    // (i c) generated from the held-out sounds moved across the gap measured on the training pairs only.
    let gap = mean_difference(&features.pair_visual_unit, &features.pair_audio_unit);
    let across_gap: Vec<Vec<f32>> = features
        .test_audio_unit
        .iter()
        .map(|a| a.iter().zip(&gap).map(|(x, g)| x + g).collect())
        .collect();
    let (_, across_gap_recall) = judging.generated_recall(&across_gap, sound_classes)?;

    // (ii) retrieval: the training picture whose feature is nearest to the audio feature.
    let library_files: Vec<PathBuf> = training.iter().map(|(p, _)| p.clone()).collect();
    let library = PictureBank::load(library_files.iter().map(PathBuf::as_path), size)?;
    let library_visual = normalised(&visual.of(&library_files, false)?);
    let retrieved: Vec<Vec<f32>> = features
        .test_audio_unit
        .iter()
        .map(|a| {
            let best = nearest(a, &library_visual, |_| true).expect("a non-empty library");
            library.generator_pixels(best, false)
        })
        .collect();
    let retrieval_recall = judging.recall(&retrieved, sound_classes, 1)?;
    let neighbours = feature_neighbours(
        &judging,
        &NeighbourInputs {
            dataset: &dataset,
            labelling,
            classes: &classes,
            training: &training,
            library: &library,
            library_visual: &library_visual,
            held_out: &held_out,
            features: &features,
        },
    )?;

    // (iii) the held-out pictures themselves.
    let real: Vec<Vec<f32>> = (0..held_out.picture_bank.len())
        .map(|i| held_out.picture_bank.generator_pixels(i, false))
        .collect();
    let real_recall = judging.recall(&real, &held_out.picture_classes, 1)?;

    let geometry = pair_geometry(&held_out, &features, &options.out)?;
    let (grid, row_classes) = draw_grid(&classes, &held_out, &generated, judging.samples(), size);
    grid.save(options.out.join("grid.png"))?;
    // The figure carries no text: the rows' classes, top to bottom, sit beside it.
    std::fs::write(options.out.join("grid.txt"), row_classes.join("\n") + "\n")?;
    let volume = volume(&judging, &held_out, &generated)?;
    let mixing = mixing(&judging, &held_out)?;

    let report = Report {
        labelling: labelling.name().to_string(),
        chance: chance(classes.len()),
        classes,
        held_out_sounds: held_out.sounds.len(),
        held_out_pictures: held_out.picture_bank.len(),
        samples_per_sound: judging.samples(),
        truncation: options.truncation,
        generated: generated_recall,
        generated_from_pictures: from_pictures_recall,
        generated_across_gap: across_gap_recall,
        retrieval_baseline: retrieval_recall,
        real_pictures: real_recall,
        geometry,
        neighbours,
        volume,
        mixing_both_in_top2: mixing.both as f64 / mixing.judged.max(1) as f64,
        mixing_either_top1: mixing.either as f64 / mixing.judged.max(1) as f64,
        mixed_pairs: mixing.pairs,
    };
    std::fs::write(
        options.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// The modality gap's geometry over every sound with its own picture, held-out and training, and their
/// scatter plot (`features.png`).
fn pair_geometry(held_out: &HeldOut, features: &Features, out: &Path) -> Result<Geometry> {
    let held_out_pairs: Vec<(usize, usize)> = held_out
        .own_pictures
        .iter()
        .enumerate()
        .filter_map(|(sound, picture)| Some((sound, (*picture)?)))
        .collect();
    let all_audio: Vec<Vec<f32>> = held_out_pairs
        .iter()
        .map(|&(sound, _)| features.test_audio_unit[sound].clone())
        .chain(features.pair_audio_unit.iter().cloned())
        .collect();
    let all_visual: Vec<Vec<f32>> = held_out_pairs
        .iter()
        .map(|&(_, picture)| features.test_visual_unit[picture].clone())
        .chain(features.pair_visual_unit.iter().cloned())
        .collect();
    plots::scatter_pairs(&all_audio, &all_visual, 640).save(out.join("features.png"))?;
    Ok(geometry(&all_audio, &all_visual))
}

/// The judge, trained on the training pictures of the judged classes only (or read from `--out`, where it
/// is kept).
fn train_judge<B: AutodiffBackend>(
    options: &EvalOptions,
    labelling: Labelling,
    training: &[(PathBuf, &Item)],
    classes: &[String],
    size: usize,
    device: &B::Device,
) -> Result<Classifier<B::InnerBackend>> {
    let labelled = with_class_index(training.to_vec(), labelling, classes);
    let pictures = PictureBank::load(labelled.iter().map(|(p, _, _)| p.as_path()), size)?;
    let labels: Vec<usize> = labelled.iter().map(|(_, _, c)| *c).collect();
    classifier::train_or_load::<B>(
        &pictures,
        &labels,
        classes.len(),
        options.classifier_steps,
        options.seed,
        &options.out.join("classifier"),
        device,
    )
}

/// The recall of a uniform guess.
fn chance(classes: usize) -> Recall {
    let classes = classes as f64;
    Recall {
        r1: 1.0 / classes,
        r5: (5.0 / classes).min(1.0),
        judged: 0,
        r1_interval: None,
        r5_interval: None,
    }
}

/// One row per class with a held-out sound: for up to three of its sounds, the sound's own picture (blank
/// for a sound without one) followed by two of its generated pictures.
fn draw_grid(
    classes: &[String],
    held_out: &HeldOut,
    generated: &[Vec<f32>],
    samples: usize,
    size: usize,
) -> (image::RgbImage, Vec<String>) {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut row_classes = Vec::new();
    for (class, name) in classes.iter().enumerate() {
        let members: Vec<usize> = (0..held_out.sounds.len())
            .filter(|&i| held_out.sound_classes[i] == class)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        for &i in members.iter().take(3) {
            row.push(held_out.own_cell(i));
            for image in generated.iter().skip(i * samples).take(samples.min(2)) {
                row.push(Some(image.clone()));
            }
        }
        rows.push(row);
        row_classes.push(name.clone());
    }
    (plots::grid(&rows, size, 2), row_classes)
}

/// The volume control: each held-out sound at four gains with the same noise. Per gain, the judge's mean
/// probability of the sound's class and the share of non-white pixels; `volume.png` shows the first rows.
fn volume<B: Backend>(
    judging: &Judging<B>,
    held_out: &HeldOut,
    generated: &[Vec<f32>],
) -> Result<Vec<(f64, f64, f64)>> {
    let gains = [0.1, 0.3, 1.0, 3.0];
    let samples = judging.samples();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut per_gain: Vec<(Vec<Vec<f32>>, Vec<usize>)> =
        vec![(Vec::new(), Vec::new()); gains.len()];
    for (i, wave) in held_out.sound_bank.waveforms.iter().enumerate() {
        let mut row = vec![held_out.own_cell(i)];
        for (g, gain) in gains.iter().enumerate() {
            // The same noise at every gain, so that only the sound's level differs along a row; at the
            // sound's own level these are the images of (i), already generated.
            let images = if *gain == 1.0 {
                generated[i * samples..(i + 1) * samples].to_vec()
            } else {
                let mut scaled = wave.clone();
                apply_gain(&mut scaled, *gain);
                clip_unit(&mut scaled);
                let feature = judging.audio_features(&[scaled])?.remove(0);
                judging.generate(&feature, samples, judging.options.seed + i as u64)?
            };
            row.push(Some(images[0].clone()));
            per_gain[g]
                .1
                .extend(std::iter::repeat_n(held_out.sound_classes[i], images.len()));
            per_gain[g].0.extend(images);
        }
        if rows.len() < 6 {
            rows.push(row);
        }
    }
    plots::grid(&rows, judging.size, 2).save(judging.options.out.join("volume.png"))?;
    let mut volume = Vec::new();
    for (gain, (images, classes)) in gains.iter().zip(&per_gain) {
        let logits = classify(&judging.judge, images, judging.size, judging.device)?;
        let probability = logits
            .iter()
            .zip(classes)
            .map(|(l, &c)| softmax(l)[c])
            .sum::<f64>()
            / images.len() as f64;
        let coverage = images.iter().map(|i| non_white_share(i)).sum::<f64>() / images.len() as f64;
        volume.push((*gain, probability, coverage));
    }
    Ok(volume)
}

/// How mixed sounds fare: judged images, those whose top two guesses hold both classes, those whose top
/// guess is one of them, and the pairs mixed.
struct Mixing {
    judged: usize,
    both: usize,
    either: usize,
    pairs: usize,
}

/// The mixing control: pairs of held-out sounds of two classes at equal weights (at most 12 pairs);
/// `mixing.png` shows the first rows.
fn mixing<B: Backend>(judging: &Judging<B>, held_out: &HeldOut) -> Result<Mixing> {
    let classes = &held_out.sound_classes;
    let sounds = &held_out.sound_bank;
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut mixing = Mixing {
        judged: 0,
        both: 0,
        either: 0,
        pairs: 0,
    };
    for i in 0..classes.len() {
        for j in i + 1..classes.len() {
            if classes[i] == classes[j] || mixing.pairs >= 12 {
                continue;
            }
            mixing.pairs += 1;
            let a = &sounds.waveforms[i][..CLIP_SAMPLES];
            let b = &sounds.waveforms[j][..CLIP_SAMPLES];
            let mut mixed = mix(&[(a, 0.5), (b, 0.5)])?;
            clip_unit(&mut mixed);
            let feature = judging.audio_features(&[mixed])?.remove(0);
            let images = judging.generate(
                &feature,
                judging.samples(),
                judging.options.seed + 1000 + i as u64,
            )?;
            for logits in classify(&judging.judge, &images, judging.size, judging.device)? {
                let (ra, rb) = (rank_of(&logits, classes[i]), rank_of(&logits, classes[j]));
                mixing.both += usize::from(ra < 2 && rb < 2);
                mixing.either += usize::from(ra == 0 || rb == 0);
                mixing.judged += 1;
            }
            if rows.len() < 6 {
                let mut row = vec![held_out.own_cell(i)];
                row.extend(images.iter().take(2).cloned().map(Some));
                row.push(held_out.own_cell(j));
                rows.push(row);
            }
        }
    }
    plots::grid(&rows, judging.size, 2).save(judging.options.out.join("mixing.png"))?;
    Ok(mixing)
}

/// What `feature_neighbours` compares: the training library (every training picture, with its features),
/// the held-out sounds and pictures with theirs.
struct NeighbourInputs<'a> {
    dataset: &'a Dataset,
    labelling: Labelling,
    classes: &'a [String],
    training: &'a [(PathBuf, &'a Item)],
    library: &'a PictureBank,
    library_visual: &'a [Vec<f32>],
    held_out: &'a HeldOut<'a>,
    features: &'a Features,
}

/// The judge-free neighbour measures (see `neighbours`) by the evaluation's classes: the library's pictures
/// with a class are the keys of the picture measures, the training sounds with one those of the sounds'.
fn feature_neighbours<B: Backend>(judging: &Judging<B>, n: &NeighbourInputs) -> Result<Neighbours> {
    use crate::dataset::build::group_of;
    let labelling = n.labelling;
    let keyed: Vec<(usize, &str)> = (0..n.training.len())
        .filter_map(|i| Some((i, labelling.class_of(n.training[i].1)?)))
        .collect();
    let key_pixels: Vec<Vec<f32>> = keyed
        .iter()
        .map(|&(i, _)| n.library.pixels[i].clone())
        .collect();
    let key_features: Vec<Vec<f32>> = keyed
        .iter()
        .map(|&(i, _)| n.library_visual[i].clone())
        .collect();
    let key_classes: Vec<&str> = keyed.iter().map(|&(_, class)| class).collect();
    let class_names = |indices: &[usize]| -> Vec<&str> {
        indices.iter().map(|&c| n.classes[c].as_str()).collect()
    };
    let pictures = picture_neighbours(
        &ClassifiedPictures {
            pixels: &key_pixels,
            features: &key_features,
            classes: key_classes.clone(),
            groups: keyed
                .iter()
                .map(|&(i, _)| group_of(n.training[i].1))
                .collect(),
        },
        &ClassifiedPictures {
            pixels: &n.held_out.picture_bank.pixels,
            features: &n.features.test_visual_unit,
            classes: class_names(&n.held_out.picture_classes),
            groups: n.held_out.pictures.iter().map(|i| group_of(i)).collect(),
        },
        judging.size,
    );
    // The training sounds with a class, as keys for the held-out sounds.
    let training_sounds = n.dataset.sounds_in(Split::Train);
    let training_sounds = labelling.classified(&training_sounds);
    let bank = SoundBank::load(training_sounds.iter().map(|(path, _, _)| path.as_path()))?;
    let training_audio = normalised(&judging.audio_features(&bank.waveforms)?);
    let training_sound_classes: Vec<&str> =
        training_sounds.iter().map(|(_, _, class)| *class).collect();
    let queries = &n.features.test_audio_unit;
    let nearest_sounds = nearest_labels(queries, &training_audio, &training_sound_classes);
    let nearest_pictures = nearest_labels(queries, &key_features, &key_classes);
    let sounds: Vec<SoundNeighbours> = n
        .held_out
        .sounds
        .iter()
        .zip(class_names(&n.held_out.sound_classes))
        .zip(nearest_sounds.into_iter().zip(nearest_pictures))
        .map(|((item, class), (sound, picture))| SoundNeighbours {
            name: item.name.clone(),
            class: class.to_string(),
            nearest_sound: sound.map(str::to_string),
            nearest_picture: picture.map(str::to_string),
        })
        .collect();
    Ok(Neighbours {
        pictures,
        held_out_sounds: SoundNeighbours::share(&sounds, |s| s.nearest_sound.as_ref()),
        held_out_sounds_to_pictures: SoundNeighbours::share(&sounds, |s| {
            s.nearest_picture.as_ref()
        }),
        held_out_count: sounds.len(),
        sounds,
    })
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Each row scaled to unit length (a zero row stays zero).
pub(crate) fn normalised(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let norm = dot(r, r).sqrt().max(1e-12);
            r.iter().map(|v| v / norm).collect()
        })
        .collect()
}

/// The mean row.
fn column_mean(rows: &[Vec<f32>]) -> Vec<f64> {
    let mut sum = vec![0.0f64; rows.first().map_or(0, Vec::len)];
    for row in rows {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    sum.iter().map(|s| s / rows.len().max(1) as f64).collect()
}

/// `mean(first) - mean(second)`, per dimension.
fn mean_difference(first: &[Vec<f32>], second: &[Vec<f32>]) -> Vec<f32> {
    let (a, b) = (column_mean(first), column_mean(second));
    a.iter().zip(&b).map(|(x, y)| (x - y) as f32).collect()
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f64> = logits.iter().map(|l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The share of pixels that are not near-white (the pictures are clip art on white).
fn non_white_share(chw: &[f32]) -> f64 {
    let plane = chw.len() / 3;
    let coloured = (0..plane)
        .filter(|&p| (0..3).any(|c| chw[c * plane + p] < 0.8))
        .count();
    coloured as f64 / plane.max(1) as f64
}

/// Recall at 1 and 5 of images judged by `logits`, where each run of `per_sound` consecutive images comes from
/// one held-out sound. The intervals resample the sounds, not the images: a sound's images are judged alike,
/// so they are not independent draws.
fn recall(logits: &[Vec<f32>], classes: &[usize], per_sound: usize, seed: u64) -> Recall {
    let ranks: Vec<usize> = logits
        .iter()
        .zip(classes)
        .map(|(l, &c)| rank_of(l, c))
        .collect();
    let share =
        |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64;
    let per_sound = per_sound.max(1);
    let hits_per_sound = |k: usize| -> Vec<usize> {
        ranks
            .chunks(per_sound)
            .map(|sound| sound.iter().filter(|&&r| r < k).count())
            .collect()
    };
    Recall {
        r1: share(1),
        r5: share(5),
        judged: ranks.len(),
        r1_interval: bootstrap_interval(&hits_per_sound(1), per_sound, seed),
        r5_interval: bootstrap_interval(&hits_per_sound(5), per_sound, seed),
    }
}

/// Resamples of the sounds that `bootstrap_interval` draws.
const BOOTSTRAP_RESAMPLES: usize = 4000;

/// The 2.5th and 97.5th percentiles of the share of hits over sounds drawn with replacement (`hits[i]` of
/// `per_sound` images of sound `i`); `None` without sounds.
fn bootstrap_interval(hits: &[usize], per_sound: usize, seed: u64) -> Option<[f64; 2]> {
    use rand::{Rng, SeedableRng};
    if hits.is_empty() {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = hits.len();
    let mut shares: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let total: usize = (0..n).map(|_| hits[rng.random_range(0..n)]).sum();
            total as f64 / (n * per_sound) as f64
        })
        .collect();
    shares.sort_by(f64::total_cmp);
    let at = |q: f64| shares[(q * (shares.len() - 1) as f64).round() as usize];
    Some([at(0.025), at(0.975)])
}

/// The modality-gap measures over L2-normalised paired features.
pub fn geometry(audio: &[Vec<f32>], visual: &[Vec<f32>]) -> Geometry {
    let n = audio.len().min(visual.len());
    let (mean_a, mean_v) = (column_mean(&audio[..n]), column_mean(&visual[..n]));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let gap: Vec<f64> = mean_a.iter().zip(&mean_v).map(|(a, v)| a - v).collect();
    let alignment = |rows: &[Vec<f32>], centre: &[f64]| -> f64 {
        rows[..n]
            .iter()
            .map(|r| {
                let d: Vec<f64> = r
                    .iter()
                    .zip(centre)
                    .map(|(x, c)| f64::from(*x) - c)
                    .collect();
                let cos = d.iter().zip(&gap).map(|(a, b)| a * b).sum::<f64>()
                    / (norm(&d) * norm(&gap)).max(1e-12);
                cos.abs()
            })
            .sum::<f64>()
            / n.max(1) as f64
    };
    let paired = (0..n)
        .map(|i| f64::from(dot(&audio[i], &visual[i])))
        .sum::<f64>()
        / n.max(1) as f64;
    let unpaired_count = n * n.saturating_sub(1);
    let unpaired = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| f64::from(dot(&audio[i], &visual[j])))
        .sum::<f64>()
        / unpaired_count.max(1) as f64;
    Geometry {
        gap: norm(&gap),
        gap_alignment_audio: alignment(audio, &mean_a),
        gap_alignment_visual: alignment(visual, &mean_v),
        audio_centroid_norm: norm(&mean_a),
        visual_centroid_norm: norm(&mean_v),
        paired_cosine: paired,
        unpaired_cosine: unpaired,
        pairs: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_copy_has_the_shift_as_its_gap_and_is_orthogonal_to_it() {
        // Visual features spread in the xy plane; audio = the same points moved along z.
        let visual: Vec<Vec<f32>> = (0..8)
            .map(|i| {
                let t = i as f32 * 0.7;
                vec![t.cos() * 0.6, t.sin() * 0.6, 0.0]
            })
            .collect();
        let audio: Vec<Vec<f32>> = visual.iter().map(|v| vec![v[0], v[1], 0.8]).collect();
        let g = geometry(&audio, &visual);
        assert!((g.gap - 0.8).abs() < 1e-6, "{g:?}");
        assert!(g.gap_alignment_audio < 1e-6 && g.gap_alignment_visual < 1e-6);
        assert!(g.paired_cosine > g.unpaired_cosine);
    }

    #[test]
    fn the_mean_difference_carries_one_cloud_onto_the_other() {
        let visual: Vec<Vec<f32>> = (0..5).map(|i| vec![i as f32, 1.0, -2.0]).collect();
        let audio: Vec<Vec<f32>> = visual.iter().map(|v| vec![v[0], v[1] - 0.5, 1.0]).collect();
        let gap = mean_difference(&visual, &audio);
        assert_eq!(gap, vec![0.0, 0.5, -3.0]);
        for (a, v) in audio.iter().zip(&visual) {
            let moved: Vec<f32> = a.iter().zip(&gap).map(|(x, g)| x + g).collect();
            assert_eq!(&moved, v);
        }
    }

    #[test]
    fn recall_counts_ranks() {
        let logits = vec![vec![3.0, 1.0, 2.0], vec![0.0, 1.0, 2.0]];
        let r = recall(&logits, &[0, 0], 1, 0);
        assert_eq!((r.r1, r.r5, r.judged), (0.5, 1.0, 2));
        // Every resample holds only hits at 5.
        assert_eq!(r.r5_interval, Some([1.0, 1.0]));
    }

    #[test]
    fn the_interval_resamples_sounds_and_narrows_with_more_of_them() {
        // Half the sounds have all their 4 images right, half none.
        let hits = |sounds: usize| -> Vec<usize> { (0..sounds).map(|i| 4 * (i % 2)).collect() };
        let [low, high] = bootstrap_interval(&hits(20), 4, 1).unwrap();
        assert!(low < 0.5 && 0.5 < high, "{low}..{high}");
        // The binomial standard error over 20 sounds is 0.11, so the interval spans about +-0.22; had the 80
        // images been counted as independent, it would be half as wide.
        assert!(high - low > 0.3 && high - low < 0.55, "{low}..{high}");
        let [low_more, high_more] = bootstrap_interval(&hits(500), 4, 1).unwrap();
        assert!(high_more - low_more < (high - low) / 3.0);
        assert_eq!(bootstrap_interval(&[], 4, 1), None);
        // A sound's images are one draw: all-or-nothing sounds spread the share more than a sound with half
        // of its images right every time, whose share never moves.
        let [even_low, even_high] = bootstrap_interval(&[2; 20], 4, 1).unwrap();
        assert_eq!([even_low, even_high], [0.5, 0.5]);
    }
}
