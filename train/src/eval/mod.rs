//! `s2v eval`: how well a model's pictures of held-out sounds show the sound's category.
//!
//! A classifier trained on the training pictures alone judges (i) images generated from held-out sounds (and,
//! to judge the generator alone, from the held-out pictures' image features), (ii) the retrieval baseline (the training picture nearest to the audio feature) and (iii) the held-out items'
//! real pictures (the upper bound). Beside R@1/R@5 it measures the modality gap between audio and visual
//! features (Sound2Vision Sec. 4.4) and, without the classifier, how often each encoder's nearest neighbours
//! share a query's category (`neighbours`), and draws a grid per category, the volume and mixing controls,
//! and a 2-D plot of the features.

mod classifier;
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
use crate::trainer::data::{PictureBank, SoundBank};
use crate::trainer::{AUDIO_ENCODER_FILE, GENERATOR_FILE, IMAGE_ENCODER_FILE};
use classifier::{Classifier, classify, rank_of};
use neighbours::{Neighbours, nearest, pixel_features, same_label_share};
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
    pub categories: Vec<String>,
    pub held_out_sounds: usize,
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
    /// How often the encoders' nearest neighbours share the query's category, beside raw pixels.
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
    let size = networks.image.input_size;
    anyhow::ensure!(
        networks.generator.config.resolution() == size,
        "the generator makes {} px pictures but the image encoder reads {size} px",
        networks.generator.config.resolution()
    );
    Ok(networks)
}

/// The held-out and the training pairs, read, with each held-out pair's category.
struct Pairs<'a> {
    test: Vec<&'a Item>,
    train: Vec<&'a Item>,
    test_sounds: SoundBank,
    test_pictures: PictureBank,
    train_sounds: SoundBank,
    train_pictures: PictureBank,
    test_classes: Vec<usize>,
}

impl<'a> Pairs<'a> {
    fn load(dataset: &'a Dataset, categories: &[String], size: usize) -> Result<Self> {
        let test: Vec<_> = dataset.pairs_in(Split::Test).collect();
        let train: Vec<_> = dataset.pairs_in(Split::Train).collect();
        anyhow::ensure!(!test.is_empty(), "the data set holds no held-out pairs");
        let sounds = |items: &[&Item]| {
            SoundBank::load(
                paths(items, |i| dataset.pair_audio(i))
                    .iter()
                    .map(|p| p.as_path()),
            )
        };
        let pictures = |items: &[&Item]| {
            PictureBank::load(
                paths(items, |i| dataset.pair_image(i))
                    .iter()
                    .map(|p| p.as_path()),
                size,
            )
        };
        let test_classes = test
            .iter()
            .map(|i| {
                categories
                    .iter()
                    .position(|c| *c == i.category)
                    .expect("pair categories define the classes")
            })
            .collect();
        Ok(Self {
            test_sounds: sounds(&test)?,
            test_pictures: pictures(&test)?,
            train_sounds: sounds(&train)?,
            train_pictures: pictures(&train)?,
            test,
            train,
            test_classes,
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
    train_audio_unit: Vec<Vec<f32>>,
    train_visual_unit: Vec<Vec<f32>>,
}

/// What an evaluation works with: the model, its judge, and the held-out sounds' categories.
struct Judging<'a, B: Backend> {
    options: &'a EvalOptions,
    device: &'a B::Device,
    nets: Networks<B>,
    judge: Classifier<B>,
    size: usize,
    test_classes: &'a [usize],
}

impl<B: Backend> Judging<'_, B> {
    fn audio_features(&self, waves: &[Vec<f64>]) -> Result<Vec<Vec<f32>>> {
        encode_rows(
            waves.len(),
            [1, FREQ_BINS, TIME_FRAMES],
            8,
            self.device,
            |i| Ok(log_spectrogram(&waves[i])?.data),
            |x| self.nets.audio.forward(x),
        )
    }

    fn visual_features(&self, bank: &PictureBank) -> Result<Vec<Vec<f32>>> {
        let size = self.size;
        encode_rows(
            bank.len(),
            [3, size, size],
            32,
            self.device,
            |i| Ok(bank.encoder_input(i)),
            |x| self.nets.image.forward(x),
        )
    }

    fn features(&self, pairs: &Pairs) -> Result<Features> {
        let test_audio = self.audio_features(&pairs.test_sounds.waveforms)?;
        let test_visual = self.visual_features(&pairs.test_pictures)?;
        Ok(Features {
            test_audio_unit: normalised(&test_audio),
            test_visual_unit: normalised(&test_visual),
            train_audio_unit: normalised(&self.audio_features(&pairs.train_sounds.waveforms)?),
            train_visual_unit: normalised(&self.visual_features(&pairs.train_pictures)?),
            test_audio,
            test_visual,
        })
    }

    /// `count` pictures of one feature, in [-1, 1], from noise drawn with `seed`.
    fn generate(&self, feature: &[f32], count: usize, seed: u64) -> Result<Vec<Vec<f32>>> {
        let dim_z = self.nets.generator.config.dim_z();
        let z = sample_noise(seed, count, dim_z, self.options.truncation)?;
        let z = Tensor::<B, 2>::from_data(TensorData::new(z, [count, dim_z]), self.device);
        let f: Vec<f32> = (0..count).flat_map(|_| feature.iter().copied()).collect();
        let f = Tensor::from_data(TensorData::new(f, [count, feature.len()]), self.device);
        let values = self
            .nets
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

    /// `samples` pictures of each held-out row's feature, with the row's category for each.
    fn generate_all(&self, features: &[Vec<f32>]) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let samples = self.samples();
        let mut images = Vec::new();
        let mut classes = Vec::new();
        for (i, feature) in features.iter().enumerate() {
            for image in self.generate(feature, samples, self.options.seed + i as u64)? {
                images.push(image);
                classes.push(self.test_classes[i]);
            }
        }
        Ok((images, classes))
    }

    /// The judge's recall of pictures made in runs of `per_sound` per held-out sound.
    fn recall(&self, images: &[Vec<f32>], classes: &[usize], per_sound: usize) -> Result<Recall> {
        let logits = classify(&self.judge, images, self.size, self.device)?;
        Ok(recall(&logits, classes, per_sound, self.options.seed))
    }

    /// Generates from each held-out row's feature and judges the pictures: the pictures and their recall.
    fn generated_recall(&self, features: &[Vec<f32>]) -> Result<(Vec<Vec<f32>>, Recall)> {
        let (images, classes) = self.generate_all(features)?;
        let recall = self.recall(&images, &classes, self.samples())?;
        Ok((images, recall))
    }

    fn samples(&self) -> usize {
        self.options.samples.max(1)
    }
}

pub fn evaluate<B: AutodiffBackend>(options: &EvalOptions, device: &B::Device) -> Result<Report> {
    // Refused before anything is loaded or trained.
    s2v_models::generator::check_truncation(options.truncation)?;
    let dataset = Dataset::open(&options.data)?;
    std::fs::create_dir_all(&options.out)?;
    let categories = dataset.categories();
    let nets = load_networks::<B::InnerBackend>(&options.model, device)?;
    let size = nets.image.input_size;
    let training = dataset.training_images();
    let judge = train_judge::<B>(options, &training, &categories, size, device)?;
    let pairs = Pairs::load(&dataset, &categories, size)?;
    let judging = Judging {
        options,
        device,
        nets,
        judge,
        size,
        test_classes: &pairs.test_classes,
    };
    let features = judging.features(&pairs)?;

    // (i) generated pictures of held-out sounds.
    let (generated, generated_recall) = judging.generated_recall(&features.test_audio)?;
    // (i b) generated from the held-out pictures' image features: what the generator makes of `f_V`'s
    // features, which bounds what it can make of sounds aligned to them.
    let (_, from_pictures_recall) = judging.generated_recall(&features.test_visual)?;
    // (i c) generated from the held-out sounds moved across the gap measured on the training pairs only.
    let gap = mean_difference(&features.train_visual_unit, &features.train_audio_unit);
    let across_gap: Vec<Vec<f32>> = features
        .test_audio_unit
        .iter()
        .map(|a| a.iter().zip(&gap).map(|(x, g)| x + g).collect())
        .collect();
    let (_, across_gap_recall) = judging.generated_recall(&across_gap)?;

    // (ii) retrieval: the training picture whose feature is nearest to the audio feature.
    let library = PictureBank::load(training.iter().map(|(p, _)| p.as_path()), size)?;
    let library_visual = normalised(&judging.visual_features(&library)?);
    let retrieved: Vec<Vec<f32>> = features
        .test_audio_unit
        .iter()
        .map(|a| {
            let best = nearest(a, &library_visual, |_| true).expect("a non-empty library");
            library.generator_pixels(best, false)
        })
        .collect();
    let neighbours = feature_neighbours(
        &NeighbourInputs {
            training: &training,
            library: &library,
            library_visual: &library_visual,
            test: &pairs.test,
            test_pictures: &pairs.test_pictures,
            test_visual: &features.test_visual_unit,
            test_audio: &features.test_audio_unit,
            train: &pairs.train,
            train_audio: &features.train_audio_unit,
        },
        size,
    );
    let retrieval_recall = judging.recall(&retrieved, &pairs.test_classes, 1)?;

    // (iii) the held-out items' own pictures.
    let real: Vec<Vec<f32>> = (0..pairs.test_pictures.len())
        .map(|i| pairs.test_pictures.generator_pixels(i, false))
        .collect();
    let real_recall = judging.recall(&real, &pairs.test_classes, 1)?;

    // Geometry over every pair, held-out and training.
    let all_audio = [
        features.test_audio_unit.clone(),
        features.train_audio_unit.clone(),
    ]
    .concat();
    let all_visual = [
        features.test_visual_unit.clone(),
        features.train_visual_unit.clone(),
    ]
    .concat();
    let geometry = geometry(&all_audio, &all_visual);
    plots::scatter_pairs(&all_audio, &all_visual, 640).save(options.out.join("features.png"))?;

    draw_grid(
        &categories,
        &pairs,
        &real,
        &generated,
        judging.samples(),
        size,
    )
    .save(options.out.join("grid.png"))?;
    let volume = volume(&judging, &pairs.test_sounds, &real, &generated)?;
    let mixing = mixing(&judging, &pairs.test_sounds, &real)?;

    let report = Report {
        chance: chance(categories.len()),
        categories,
        held_out_sounds: pairs.test.len(),
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

/// The judge, trained on the labelled training pictures only (or read from `--out`, where it is kept).
fn train_judge<B: AutodiffBackend>(
    options: &EvalOptions,
    training: &[(PathBuf, &Item)],
    categories: &[String],
    size: usize,
    device: &B::Device,
) -> Result<Classifier<B::InnerBackend>> {
    let labelled: Vec<(&Path, usize)> = training
        .iter()
        .filter_map(|(p, item)| {
            let class = categories.iter().position(|c| *c == item.category)?;
            Some((p.as_path(), class))
        })
        .collect();
    let pictures = PictureBank::load(labelled.iter().map(|(p, _)| *p), size)?;
    let labels: Vec<usize> = labelled.iter().map(|(_, c)| *c).collect();
    classifier::train_or_load::<B>(
        &pictures,
        &labels,
        categories.len(),
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

/// One row per category: a held-out sound's real picture followed by its generated ones, for up to three
/// sounds.
fn draw_grid(
    categories: &[String],
    pairs: &Pairs,
    real: &[Vec<f32>],
    generated: &[Vec<f32>],
    samples: usize,
    size: usize,
) -> image::RgbImage {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for class in 0..categories.len() {
        let members: Vec<usize> = (0..pairs.test.len())
            .filter(|&i| pairs.test_classes[i] == class)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        for &i in members.iter().take(3) {
            row.push(Some(real[i].clone()));
            for image in generated.iter().skip(i * samples).take(samples.min(2)) {
                row.push(Some(image.clone()));
            }
        }
        rows.push(row);
    }
    plots::grid(&rows, size, 2)
}

/// The volume control: each held-out sound at four gains with the same noise. Per gain, the judge's mean
/// probability of the sound's category and the share of non-white pixels; `volume.png` shows the first rows.
fn volume<B: Backend>(
    judging: &Judging<B>,
    sounds: &SoundBank,
    real: &[Vec<f32>],
    generated: &[Vec<f32>],
) -> Result<Vec<(f64, f64, f64)>> {
    let gains = [0.1, 0.3, 1.0, 3.0];
    let samples = judging.samples();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut per_gain: Vec<(Vec<Vec<f32>>, Vec<usize>)> =
        vec![(Vec::new(), Vec::new()); gains.len()];
    for (i, wave) in sounds.waveforms.iter().enumerate() {
        let mut row = vec![Some(real[i].clone())];
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
                .extend(std::iter::repeat_n(judging.test_classes[i], images.len()));
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

/// How mixed sounds fare: judged images, those whose top two guesses hold both categories, those whose top
/// guess is one of them, and the pairs mixed.
struct Mixing {
    judged: usize,
    both: usize,
    either: usize,
    pairs: usize,
}

/// The mixing control: pairs of held-out sounds of two categories at equal weights (at most 12 pairs);
/// `mixing.png` shows the first rows.
fn mixing<B: Backend>(
    judging: &Judging<B>,
    sounds: &SoundBank,
    real: &[Vec<f32>],
) -> Result<Mixing> {
    let classes = judging.test_classes;
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
                let mut row = vec![Some(real[i].clone())];
                row.extend(images.iter().take(2).cloned().map(Some));
                row.push(Some(real[j].clone()));
                rows.push(row);
            }
        }
    }
    plots::grid(&rows, judging.size, 2).save(judging.options.out.join("mixing.png"))?;
    Ok(mixing)
}

/// What `feature_neighbours` compares: the training library (every training picture) and the held-out pairs,
/// with their L2-normalised features.
struct NeighbourInputs<'a> {
    training: &'a [(PathBuf, &'a Item)],
    library: &'a PictureBank,
    library_visual: &'a [Vec<f32>],
    test: &'a [&'a Item],
    test_pictures: &'a PictureBank,
    test_visual: &'a [Vec<f32>],
    test_audio: &'a [Vec<f32>],
    train: &'a [&'a Item],
    train_audio: &'a [Vec<f32>],
}

/// The judge-free neighbour measures (see `neighbours`), over pictures of `size` px.
fn feature_neighbours(n: &NeighbourInputs, size: usize) -> Neighbours {
    use crate::dataset::build::group_of;
    const PIXEL_SIDE: usize = 16;
    let library_labels: Vec<&str> = n
        .training
        .iter()
        .map(|(_, i)| i.category.as_str())
        .collect();
    let library_groups: Vec<String> = n.training.iter().map(|(_, i)| group_of(i)).collect();
    let test_labels: Vec<&str> = n.test.iter().map(|i| i.category.as_str()).collect();
    let train_labels: Vec<&str> = n.train.iter().map(|i| i.category.as_str()).collect();
    let other_group = |q: usize, k: usize| library_groups[q] != library_groups[k];
    // Pixel features of the library and the held-out pictures, centred over both together.
    let all_pixels = pixel_features(
        &[
            n.library.pixels.as_slice(),
            n.test_pictures.pixels.as_slice(),
        ]
        .concat(),
        size,
        PIXEL_SIDE,
    );
    let (library_pixels, test_pixels) = all_pixels.split_at(n.library.len());
    Neighbours {
        training_pictures: same_label_share(
            n.library_visual,
            &library_labels,
            n.library_visual,
            &library_labels,
            other_group,
        ),
        training_pictures_by_pixels: same_label_share(
            library_pixels,
            &library_labels,
            library_pixels,
            &library_labels,
            other_group,
        ),
        held_out_pictures: same_label_share(
            n.test_visual,
            &test_labels,
            n.library_visual,
            &library_labels,
            |_, _| true,
        ),
        held_out_pictures_by_pixels: same_label_share(
            test_pixels,
            &test_labels,
            library_pixels,
            &library_labels,
            |_, _| true,
        ),
        held_out_sounds: same_label_share(
            n.test_audio,
            &test_labels,
            n.train_audio,
            &train_labels,
            |_, _| true,
        ),
        held_out_sounds_to_pictures: same_label_share(
            n.test_audio,
            &test_labels,
            n.library_visual,
            &library_labels,
            |_, _| true,
        ),
        training_picture_count: n.library.len(),
        held_out_count: n.test.len(),
    }
}

fn paths(items: &[&Item], path: impl Fn(&Item) -> PathBuf) -> Vec<PathBuf> {
    items.iter().map(|i| path(i)).collect()
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalised(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
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
