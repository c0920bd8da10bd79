//! `s2v data build-default`: the default model's training data, built from Debian packages.
//!
//! Tux Paint's stamps pair a picture with a real sound effect for about a hundred items; its other stamps and a
//! selection of Openclipart's categories form the image-only set. The packages come from `apt-get download`
//! (the only network access) and are unpacked with `dpkg-deb`; every item records its package's licence.
//! On request GCompris adds its instruments (drawings) and farm animals (photos) with their sounds, read from
//! its Qt resource archives, and `fluid-soundfont-gm` gives the instrument pictures without a sound a few
//! notes of their instrument.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, GenericImageView, ImageBuffer, Rgb, RgbImage, imageops::FilterType};
use rayon::prelude::*;
use s2v_shared::audio::{SAMPLE_RATE, decode_audio, resample};
use sha2::{Digest, Sha256};

use super::clips::clips;
use super::labels::{LabelTable, Vocabulary};
use super::licence_policy::WeightsLicence;
use super::packaged::{LabelledFile, Media, PackageFiles, labelled_files};
use super::pictures::decode_picture;
use super::qt_resources::{Resource, read_resources};
use super::soundfont::{SOUNDFONT_FILE, SOUNDFONT_PACKAGE, instrument_of, load_sound_font, play};
use super::{
    AUDIO_ONLY_DIR, AUDIOS_DIR, IMAGE_ONLY_DIR, IMAGES_DIR, Item, PAIRS_CSV, Split,
    audio_only_audio_path, image_only_image_path, pair_audio_path, pair_image_path, read_items,
    write_items,
};

pub const TUXPAINT_PACKAGE: &str = "tuxpaint-stamps-default";
pub const OPENCLIPART_PACKAGE: &str = "openclipart-png";
pub const GCOMPRIS_PACKAGE: &str = "gcompris-qt-data";
const GCOMPRIS_RCC: &str = "usr/share/gcompris-qt/rcc";
/// GCompris's archives of pictures with sounds: (archive, category of its items; `None`: birds or mammals).
const GCOMPRIS_ARCHIVES: [(&str, Option<&str>); 2] = [
    ("instruments.rcc", Some("instrument")),
    ("explore_farm_animals.rcc", None),
];
/// Farm animals that are birds; the others are mammals.
const FARM_BIRDS: [&str; 6] = ["chicken", "duck", "owl", "rooster", "goose", "turkey"];
const TUXPAINT_STAMPS: &str = "usr/share/tuxpaint/stamps";
const OPENCLIPART_PNG: &str = "usr/share/openclipart/png";
/// Openclipart's folders whose pictures resemble the paired categories.
const OPENCLIPART_FOLDERS: [&str; 6] = [
    "animals",
    "transportation",
    "tools",
    "recreation/music",
    "food",
    "plants",
];

/// Side of the stored square pictures; the trainer scales them down to the model's resolution.
pub const STORED_SIZE: u32 = 128;

/// `s2v data build-default`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildOptions {
    #[arg(long)]
    pub out: PathBuf,
    /// Use packages already unpacked here (a tree with usr/share/...) instead of downloading them.
    #[arg(long)]
    pub unpacked: Option<PathBuf>,
    /// Hold out one item group in this many per category.
    #[arg(long, default_value_t = 5, conflicts_with = "split_from")]
    pub test_every: usize,
    /// Also pair GCompris's instruments and farm animals with their sounds (`gcompris-qt-data`). The
    /// held-out split moves with the items, so a model is evaluated on a build made the way its training data
    /// was (the shipped model was trained on a build without them).
    #[arg(long = "with-gcompris")]
    pub gcompris: bool,
    /// Also give the instrument pictures without a sound a phrase of their instrument, played from
    /// `fluid-soundfont-gm` (they move from the image-only set to the pairs; the held-out split moves too).
    #[arg(long = "with-soundfont")]
    pub soundfont: bool,
    /// Keep the held-out split of an earlier build in this folder: exactly its held-out items are held out,
    /// and a new pair of one of their groups is left out. Extra data (`--with-gcompris`, `--with-soundfont`)
    /// then only adds training pairs, and a model trained on the earlier build is judged on the same sounds.
    #[arg(long)]
    pub split_from: Option<PathBuf>,
    /// Give items fine labels from `train/labels/sources.csv`, hold out by fine label, and also read the
    /// labelled sounds and pictures of every package the table names (0 A.D., MegaGlest, Widelands, Wesnoth,
    /// OpenSFX, Simutrans, sound themes, Sonic Pi, GCompris's other archives, pysiogame's drawings): sounds go
    /// to the audio-only set, paired with pictures of their fine label while training; pictures go to the
    /// image-only set. Long recordings are cut into clips, repeated files kept once.
    #[arg(long = "with-labelled-sources")]
    pub labelled_sources: bool,
    /// Leave out, with its files, every item whose licence does not allow weights trained on it to be
    /// distributed under this licence (before the split, so that the held-out items come from what is kept).
    #[arg(long, value_enum, value_name = "LICENCE")]
    pub weights_licence: Option<WeightsLicence>,
}

#[derive(Debug, Default)]
pub struct BuildSummary {
    pub pairs_train: usize,
    pub pairs_test: usize,
    pub image_only: usize,
    pub audio_only_train: usize,
    pub audio_only_test: usize,
    /// Per fine label: (sounds, pictures) for training, over every set.
    pub per_label: BTreeMap<String, (usize, usize)>,
    pub skipped: Vec<String>,
    /// Items left out by `--weights-licence`: how many for each reason.
    pub left_out: BTreeMap<String, usize>,
}

pub fn build_default(options: &BuildOptions) -> Result<BuildSummary> {
    // Read before the long build, so that a wrong folder fails at once.
    let kept_split = options
        .split_from
        .as_deref()
        .map(|earlier| held_out_items(earlier).map(|items| (earlier, items)))
        .transpose()?;
    let vocabulary = Vocabulary::embedded()?;
    let labels = LabelTable::embedded(&vocabulary)?;
    let root = unpacked_packages(options, &labels)?;
    let out = options.out.as_path();
    for dir in [
        out.join(IMAGES_DIR),
        out.join(AUDIOS_DIR),
        out.join(IMAGE_ONLY_DIR).join(IMAGES_DIR),
        out.join(AUDIO_ONLY_DIR).join(AUDIOS_DIR),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut build = Build {
        root: &root,
        out,
        labels: &labels,
        vocabulary: &vocabulary,
        fine_labels: options.labelled_sources,
        taken: TakenNames::default(),
        contents: HashSet::new(),
        pairs: Vec::new(),
        image_only: Vec::new(),
        audio_only: Vec::new(),
        summary: BuildSummary::default(),
    };
    build.add_tuxpaint_stamps()?;
    if options.gcompris {
        build.add_gcompris()?;
    }
    build.add_openclipart()?;
    if options.labelled_sources {
        build.add_labelled_sources()?;
    }
    let Build {
        mut pairs,
        mut image_only,
        mut audio_only,
        mut summary,
        ..
    } = build;
    if options.soundfont {
        play_instruments(&root, out, &mut pairs, &mut image_only, &mut summary)?;
    }
    if let Some(licence) = options.weights_licence {
        let had_pairs = !pairs.is_empty();
        for (items, path) in [
            (&mut pairs, ItemFiles::Pair),
            (&mut image_only, ItemFiles::ImageOnly),
            (&mut audio_only, ItemFiles::AudioOnly),
        ] {
            leave_out_refused(items, licence, out, path, &mut summary.left_out)?;
        }
        if had_pairs && pairs.is_empty() {
            bail!(
                "no pair of a sound and its picture is under a licence that allows weights under \
                 {licence}: {:?}",
                summary.left_out
            );
        }
    }
    if pairs.is_empty() {
        bail!(
            "no picture with a sound under {}",
            root.join(TUXPAINT_STAMPS).display()
        );
    }
    match kept_split {
        Some((earlier, held_out)) => keep_split(&mut pairs, &held_out, earlier, out, &mut summary)?,
        None if options.labelled_sources => {
            let every = options.test_every.max(2);
            let sounds = pairs.iter_mut().chain(audio_only.iter_mut()).collect();
            let held = hold_out(sounds, every, Held::EverywhereItOccurs);
            hold_out_pictures(&mut image_only, &held, every);
        }
        // The split of the builds before fine labels, which the shipped model's numbers were measured on.
        None => {
            hold_out(
                pairs.iter_mut().collect(),
                options.test_every.max(2),
                Held::InItsOwnKey,
            );
        }
    }
    summary.pairs_train = pairs.iter().filter(|i| i.split == Split::Train).count();
    summary.pairs_test = pairs.len() - summary.pairs_train;
    summary.image_only = image_only.len();
    summary.audio_only_train = audio_only
        .iter()
        .filter(|i| i.split == Split::Train)
        .count();
    summary.audio_only_test = audio_only.len() - summary.audio_only_train;
    summary.per_label = count_per_label(&pairs, &image_only, &audio_only);
    write_items(&out.join(PAIRS_CSV), &pairs)?;
    write_items(&out.join(IMAGE_ONLY_DIR).join(PAIRS_CSV), &image_only)?;
    write_items(&out.join(AUDIO_ONLY_DIR).join(PAIRS_CSV), &audio_only)?;
    write_label_counts(&out.join(LABEL_COUNTS_CSV), &summary.per_label, &vocabulary)?;
    Ok(summary)
}

/// Which files an item has in the data set.
#[derive(Clone, Copy)]
enum ItemFiles {
    Pair,
    ImageOnly,
    AudioOnly,
}

impl ItemFiles {
    fn paths(self, out: &Path, name: &str) -> Vec<PathBuf> {
        match self {
            Self::Pair => vec![pair_image_path(out, name), pair_audio_path(out, name)],
            Self::ImageOnly => vec![image_only_image_path(out, name)],
            Self::AudioOnly => vec![audio_only_audio_path(out, name)],
        }
    }
}

/// Drops the items whose licences do not allow weights under `licence`, deleting their files, and counts
/// them by reason.
fn leave_out_refused(
    items: &mut Vec<Item>,
    licence: WeightsLicence,
    out: &Path,
    files: ItemFiles,
    left_out: &mut BTreeMap<String, usize>,
) -> Result<()> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let Some(reason) = licence.refusal(&item.licence) else {
            kept.push(item);
            continue;
        };
        for path in files.paths(out, &item.name) {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        *left_out.entry(reason).or_default() += 1;
    }
    *items = kept;
    Ok(())
}

/// The tree the packages are unpacked in: the one given, or one made by downloading them.
fn unpacked_packages(options: &BuildOptions, labels: &LabelTable) -> Result<PathBuf> {
    let root = match &options.unpacked {
        Some(root) => root.clone(),
        None => {
            let mut packages = BTreeSet::from([TUXPAINT_PACKAGE, OPENCLIPART_PACKAGE]);
            if options.gcompris {
                packages.insert(GCOMPRIS_PACKAGE);
            }
            if options.soundfont {
                packages.insert(SOUNDFONT_PACKAGE);
            }
            if options.labelled_sources {
                packages.extend(labels.packages());
            }
            fetch_and_unpack(&options.out, &packages.into_iter().collect::<Vec<_>>())?
        }
    };
    let stamps = root.join(TUXPAINT_STAMPS);
    if !stamps.is_dir() {
        bail!(
            "{} is missing: is {TUXPAINT_PACKAGE} unpacked under {}?",
            stamps.display(),
            root.display()
        );
    }
    Ok(root)
}

/// A build under way: the items collected so far from each package, and what was skipped.
struct Build<'a> {
    root: &'a Path,
    out: &'a Path,
    labels: &'a LabelTable,
    vocabulary: &'a Vocabulary,
    /// Whether items get fine labels: builds made before them (and the shipped model's) have none.
    fine_labels: bool,
    taken: TakenNames,
    /// The SHA-256 of every labelled file taken: games ship one recording in several places.
    contents: HashSet<[u8; 32]>,
    pairs: Vec<Item>,
    image_only: Vec<Item>,
    audio_only: Vec<Item>,
    summary: BuildSummary,
}

impl Build<'_> {
    /// Tux Paint's stamps: a picture with a sound beside it is a pair, one without is image-only.
    fn add_tuxpaint_stamps(&mut self) -> Result<()> {
        let stamps_root = self.root.join(TUXPAINT_STAMPS);
        let licence = package_licence(self.root, TUXPAINT_PACKAGE);
        let mut stamps = Vec::new();
        for png in find_files(&stamps_root, "png")? {
            let relative = png.strip_prefix(&stamps_root)?.with_extension("");
            // Letters, digits and faces: glyphs with spoken names, not scenes with sounds.
            if !relative.starts_with("symbols") {
                stamps.push((png, relative));
            }
        }
        // Decoding and resizing the pictures is most of the build: all cores, the items kept in file order.
        let names: Vec<String> = stamps
            .iter()
            .map(|(_, relative)| self.taken.claim(item_name("tuxpaint", relative)))
            .collect();
        let (out, labels) = (self.out, self.fine_labels.then_some(self.labels));
        let converted: Vec<_> = stamps
            .par_iter()
            .zip(names)
            .map(|((png, relative), name)| {
                let sound = png.with_extension("ogg");
                let paired = sound.exists();
                let result = if paired {
                    convert_audio(&sound, &pair_audio_path(out, &name))
                        .and_then(|()| convert_image(png, &pair_image_path(out, &name)))
                } else {
                    convert_image(png, &image_only_image_path(out, &name))
                };
                let source = format!("{TUXPAINT_PACKAGE}:{}", relative.display());
                let item = Item {
                    name,
                    category: category_of(relative),
                    label: fine_label(labels, &source),
                    source,
                    licence: licence.clone(),
                    split: Split::Train,
                };
                (png, paired, item, result)
            })
            .collect();
        for (png, paired, item, result) in converted {
            match result {
                Ok(()) if paired => self.pairs.push(item),
                Ok(()) => self.image_only.push(item),
                Err(e) => self.skip(png.display(), e),
            }
        }
        Ok(())
    }

    /// GCompris's instruments and farm animals, each drawing or photo with its sound.
    fn add_gcompris(&mut self) -> Result<()> {
        let licence = package_licence(self.root, GCOMPRIS_PACKAGE);
        for (archive, category) in GCOMPRIS_ARCHIVES {
            let path = self.root.join(GCOMPRIS_RCC).join(archive);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "reading {}: is {GCOMPRIS_PACKAGE} unpacked?",
                    path.display()
                )
            })?;
            let resources =
                read_resources(&bytes).with_context(|| format!("reading {}", path.display()))?;
            let licences = resource_licences(&resources);
            let licence_of = |resource: &Resource| {
                licences
                    .get(resource.path.as_str())
                    .cloned()
                    .unwrap_or_else(|| licence.clone())
            };
            let archive_stem = archive.trim_end_matches(".rcc");
            for (stem, sound, picture) in gcompris_pairs(&resources) {
                let name = self.taken.claim(item_name(
                    "gcompris",
                    Path::new(&format!("{archive_stem}/{stem}")),
                ));
                let converted = convert_audio_bytes(
                    &sound.data,
                    Some("ogg"),
                    &pair_audio_path(self.out, &name),
                )
                .and_then(|()| {
                    save_picture(
                        &decode_picture(&picture.path, &picture.data)?,
                        &pair_image_path(self.out, &name),
                    )
                });
                let category = category.unwrap_or(if FARM_BIRDS.contains(&stem.as_str()) {
                    "bird"
                } else {
                    "mammal"
                });
                let source = format!(
                    "{GCOMPRIS_PACKAGE}:{archive}/{}",
                    sound.path.trim_end_matches(".ogg")
                );
                let label = fine_label(self.fine_labels.then_some(self.labels), &source);
                match converted {
                    Ok(()) => self.pairs.push(Item {
                        name,
                        category: category.to_string(),
                        label,
                        source,
                        licence: format!(
                            "sound: {}; picture: {}",
                            licence_of(sound),
                            licence_of(picture)
                        ),
                        split: Split::Train,
                    }),
                    Err(e) => self.skip(format!("{}:{}", path.display(), sound.path), e),
                }
            }
        }
        Ok(())
    }

    /// Openclipart's pictures in the folders whose pictures resemble the paired categories: image-only.
    fn add_openclipart(&mut self) -> Result<()> {
        let openclipart_root = self.root.join(OPENCLIPART_PNG);
        let licence = package_licence(self.root, OPENCLIPART_PACKAGE);
        let mut clipart = Vec::new();
        for folder in OPENCLIPART_FOLDERS {
            let dir = openclipart_root.join(folder);
            if dir.is_dir() {
                for png in find_files(&dir, "png")? {
                    let relative = png.strip_prefix(&openclipart_root)?.with_extension("");
                    clipart.push((png, relative));
                }
            }
        }
        let names: Vec<String> = clipart
            .iter()
            .map(|(_, relative)| self.taken.claim(item_name("openclipart", relative)))
            .collect();
        let (out, labels) = (self.out, self.fine_labels.then_some(self.labels));
        let converted: Vec<_> = clipart
            .par_iter()
            .zip(names)
            .map(|((png, relative), name)| -> Result<Item> {
                convert_image(png, &image_only_image_path(out, &name))?;
                let source = format!("{OPENCLIPART_PACKAGE}:{}", relative.display());
                Ok(Item {
                    name,
                    category: category_of(relative),
                    label: fine_label(labels, &source),
                    source,
                    licence: licence.clone(),
                    split: Split::Train,
                })
            })
            .collect();
        for ((png, _), result) in clipart.iter().zip(converted) {
            match result {
                Ok(item) => self.image_only.push(item),
                Err(e) => self.skip(png.display(), e),
            }
        }
        Ok(())
    }

    /// The labelled sounds and pictures the label table names by installed path: sounds to the audio-only
    /// set, cut into clips; pictures to the image-only set. A file whose bytes were taken before is left out.
    fn add_labelled_sources(&mut self) -> Result<()> {
        for package in self.labels.packages() {
            let PackageFiles { files, missing } = labelled_files(self.root, package, self.labels)?;
            for place in missing {
                self.summary.skipped.push(format!(
                    "{place}: not unpacked under {}",
                    self.root.display()
                ));
            }
            let fresh: Vec<LabelledFile> = files
                .into_iter()
                .filter(|file| self.contents.insert(Sha256::digest(&file.bytes).into()))
                .collect();
            // Decoding and resampling is the slow part: all cores, then the files written in order.
            let decoded: Vec<_> = fresh
                .into_par_iter()
                .map(|file| {
                    let media = decode_labelled(&file);
                    (file, media)
                })
                .collect();
            for (file, media) in decoded {
                match media.and_then(|media| self.save_labelled(&file, media)) {
                    Ok(()) => {}
                    Err(e) => self.skip(file.source(), e),
                }
            }
        }
        Ok(())
    }

    fn save_labelled(&mut self, file: &LabelledFile, media: Decoded) -> Result<()> {
        let category = self
            .vocabulary
            .category_of(&file.label)
            .context("a label outside the vocabulary")?;
        let prefix = file.package.replace('-', "_");
        let item = |name: String| Item {
            name,
            category: category.to_string(),
            label: file.label.clone(),
            source: file.source(),
            licence: file.licence.clone(),
            split: Split::Train,
        };
        match media {
            Decoded::Picture(picture) => {
                let name = self.taken.claim(item_name(&prefix, Path::new(file.stem())));
                picture.save_with_format(
                    image_only_image_path(self.out, &name),
                    image::ImageFormat::Jpeg,
                )?;
                self.image_only.push(item(name));
            }
            Decoded::Clips(clips) => {
                if clips.is_empty() {
                    bail!("silent");
                }
                for samples in clips {
                    let name = self.taken.claim(item_name(&prefix, Path::new(file.stem())));
                    write_wav(&samples, &audio_only_audio_path(self.out, &name))?;
                    self.audio_only.push(item(name));
                }
            }
        }
        Ok(())
    }

    fn skip(&mut self, what: impl std::fmt::Display, error: anyhow::Error) {
        self.summary.skipped.push(format!("{what}: {error:#}"));
    }
}

/// A labelled file decoded: a picture squared at the stored size, or a sound's clips at 16 kHz.
enum Decoded {
    Picture(RgbImage),
    Clips(Vec<Vec<f64>>),
}

fn decode_labelled(file: &LabelledFile) -> Result<Decoded> {
    Ok(match file.media {
        Media::Picture => Decoded::Picture(square_on_white(
            &decode_picture(&file.path, &file.bytes)?,
            STORED_SIZE,
        )),
        Media::Sound => {
            let decoded = decode_audio(&file.bytes, Some(&file.format))?;
            let samples = resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?;
            Decoded::Clips(
                clips(&samples, SAMPLE_RATE)
                    .into_iter()
                    .map(<[f64]>::to_vec)
                    .collect(),
            )
        }
    })
}

/// The file listing, per fine label, how many training sounds and pictures a build has: for review.
pub const LABEL_COUNTS_CSV: &str = "labels.csv";

fn write_label_counts(
    path: &Path,
    counts: &BTreeMap<String, (usize, usize)>,
    vocabulary: &Vocabulary,
) -> Result<()> {
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    writer.write_record(["label", "category", "training sounds", "training pictures"])?;
    for label in vocabulary.labels() {
        let (sounds, pictures) = counts.get(label).copied().unwrap_or_default();
        let category = vocabulary.category_of(label).unwrap_or_default();
        writer.write_record([label, category, &sounds.to_string(), &pictures.to_string()])?;
    }
    writer.flush()?;
    Ok(())
}

/// Per fine label, the training sounds and pictures over every set.
fn count_per_label(
    pairs: &[Item],
    image_only: &[Item],
    audio_only: &[Item],
) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let training = |items: &'static str, list: &[Item]| -> Vec<(String, &'static str)> {
        list.iter()
            .filter(|i| i.split == Split::Train && !i.label.is_empty())
            .map(|i| (i.label.clone(), items))
            .collect()
    };
    for (label, kind) in training("pair", pairs)
        .into_iter()
        .chain(training("picture", image_only))
        .chain(training("sound", audio_only))
    {
        let entry = counts.entry(label).or_default();
        if kind != "picture" {
            entry.0 += 1;
        }
        if kind != "sound" {
            entry.1 += 1;
        }
    }
    counts
}

/// Gives every image-only instrument picture whose file name names an instrument a phrase of that instrument
/// from the SoundFont, and moves it to the pairs.
fn play_instruments(
    root: &Path,
    out: &Path,
    pairs: &mut Vec<Item>,
    image_only: &mut Vec<Item>,
    summary: &mut BuildSummary,
) -> Result<()> {
    let path = root.join(SOUNDFONT_FILE);
    let font = load_sound_font(&path)
        .with_context(|| format!("is {SOUNDFONT_PACKAGE} unpacked under {}?", root.display()))?;
    let licence = package_licence(root, SOUNDFONT_PACKAGE);
    let mut kept = Vec::new();
    for mut item in image_only.drain(..) {
        let instrument = if item.category == "instrument" {
            instrument_of(source_file(&item))
        } else {
            None
        };
        let Some(instrument) = instrument else {
            kept.push(item);
            continue;
        };
        let played = play(&font, instrument).and_then(|samples| {
            write_wav(&samples, &pair_audio_path(out, &item.name))?;
            let from = image_only_image_path(out, &item.name);
            let to = pair_image_path(out, &item.name);
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))
        });
        match played {
            Ok(()) => {
                item.licence = format!(
                    "picture: {}; sound: {licence} ({SOUNDFONT_PACKAGE}: {})",
                    item.licence, instrument.name
                );
                pairs.push(item);
            }
            Err(e) => {
                summary.skipped.push(format!("{}: {e:#}", item.source));
                kept.push(item);
            }
        }
    }
    *image_only = kept;
    Ok(())
}

/// The sounds of a GCompris archive with the picture of the same thing beside them: `<name>.ogg` with
/// `<name>.webp` (a photo) or else `<name>.svg` (a drawing), also when the sound's name is the plural
/// (`chickens.ogg` with `chicken.webp`). Sounds without a picture are left out.
fn gcompris_pairs(resources: &[Resource]) -> Vec<(String, &Resource, &Resource)> {
    let by_path: BTreeMap<&str, &Resource> =
        resources.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut pairs = Vec::new();
    for sound in resources {
        let Some(base) = sound.path.strip_suffix(".ogg") else {
            continue;
        };
        let singular = base.strip_suffix('s').unwrap_or(base);
        let picture = [base, singular].into_iter().find_map(|b| {
            ["webp", "svg"]
                .iter()
                .find_map(|ext| by_path.get(format!("{b}.{ext}").as_str()).copied())
                .map(|picture| (b, picture))
        });
        if let Some((matched, picture)) = picture {
            let stem = matched.rsplit('/').next().unwrap_or(matched).to_lowercase();
            pairs.push((stem, sound, picture));
        }
    }
    pairs
}

/// Each file's licence, from the `README` files beside GCompris's resources: blocks of `License: L` followed
/// by `Files:` and one file name a line, and lines such as `drum_kit.ogg: <source> <licence>`. Files that no
/// README names take the package's licence.
pub(super) fn resource_licences(resources: &[Resource]) -> BTreeMap<String, String> {
    let mut licences = BTreeMap::new();
    for readme in resources.iter().filter(|r| r.path.ends_with("/README")) {
        let folder = &readme.path[..readme.path.len() - "README".len()];
        let text = String::from_utf8_lossy(&readme.data);
        let (mut licence, mut listing) = (None::<String>, false);
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                (licence, listing) = (None, false);
            } else if let Some(value) = line.strip_prefix("License:") {
                licence = Some(value.trim().to_string());
            } else if line == "Files:" {
                listing = true;
            } else if listing && !line.contains(':') {
                if let Some(licence) = &licence {
                    licences.insert(format!("{folder}{line}"), licence.clone());
                }
            } else if let Some((file, note)) = line.split_once(": ")
                && !file.contains(' ')
                && file.contains('.')
                && note.to_lowercase().contains("licen")
            {
                // The note is a source address and then the licence's name.
                let named = note.split_once(' ').map_or(note, |(_, rest)| rest);
                licences.insert(format!("{folder}{file}"), named.trim().to_string());
            }
        }
    }
    licences
}

/// Downloads the packages into `out/debs` (unless already there) and unpacks them into `out/unpacked`.
fn fetch_and_unpack(out: &Path, packages: &[&str]) -> Result<PathBuf> {
    let debs = out.join(super::DEBS_DIR);
    let unpacked = out.join(super::UNPACKED_DIR);
    std::fs::create_dir_all(&debs)?;
    for &package in packages {
        let existing = || downloaded_deb(&debs, package);
        let deb = match existing()? {
            Some(deb) => deb,
            None => {
                run(Command::new("apt-get")
                    .arg("download")
                    .arg(package)
                    .current_dir(&debs))?;
                existing()?.with_context(|| format!("apt-get download {package} left no .deb"))?
            }
        };
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    Ok(unpacked)
}

/// The `.deb` of `package` that `apt-get download` left in `debs` (`name_version_arch.deb`), if any.
pub(super) fn downloaded_deb(debs: &Path, package: &str) -> std::io::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(std::fs::read_dir(debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        }))
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The licence of a package's main files, from its `copyright`: the first `License:` field, or, in a file
/// that is not machine-readable, the licence its text releases the files under ("under the MIT license"), or
/// a public-domain dedication (Openclipart's).
pub(super) fn package_licence(root: &Path, package: &str) -> String {
    let path = super::copyright::copyright_file(root, package);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!("unknown: no {}", path.display());
    };
    licence_in(&text).unwrap_or_else(|| format!("unknown: see {}", path.display()))
}

fn licence_in(copyright: &str) -> Option<String> {
    let field = copyright
        .lines()
        .find_map(|l| l.strip_prefix("License:").map(str::trim))
        .filter(|l| !l.is_empty());
    field
        .map(|name| super::copyright::with_later_versions(name, copyright))
        .or_else(|| {
            let words: Vec<&str> = copyright.split_whitespace().collect();
            // The first statement in the text is the main files'; later ones are about bundled code.
            let released = (0..words.len()).find_map(|at| {
                gnu_gpl_at(&words[at..]).or_else(|| {
                    let w = words.get(at..at + 4)?;
                    (w[0] == "under" && w[1] == "the" && w[3].to_lowercase().starts_with("license"))
                        .then(|| w[2].to_string())
                })
            });
            released.or_else(|| {
                copyright
                    .to_lowercase()
                    .contains("public domain dedication")
                    .then(|| "public domain".to_string())
            })
        })
}

/// `GNU General Public License version 2 or at your option any later version` as `GPL-2+`.
fn gnu_gpl_at(words: &[&str]) -> Option<String> {
    let phrase = ["GNU", "General", "Public", "License", "version"];
    if words.len() <= phrase.len() || words[..phrase.len()] != phrase {
        return None;
    }
    let version = words[phrase.len()].trim_end_matches([',', '.']);
    let later = words[phrase.len()..]
        .iter()
        .take(8)
        .any(|w| w.starts_with("later"));
    Some(format!("GPL-{version}{}", if later { "+" } else { "" }))
}

fn find_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The item names given so far in a build. Two sources whose paths differ only in characters that
/// `item_name` replaces (Openclipart's `magnolia-white_patricia__01` and `magnolia_white_patricia__01`) would
/// otherwise share a name, and one picture would overwrite the other's file while both rows stayed listed.
#[derive(Default)]
struct TakenNames(HashSet<String>);

impl TakenNames {
    /// `name`, or the first of `name_2`, `name_3`, ... not yet taken.
    fn claim(&mut self, name: String) -> String {
        if self.0.insert(name.clone()) {
            return name;
        }
        let mut n = 2;
        loop {
            let candidate = format!("{name}_{n}");
            if self.0.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

/// `source_path_to_item`, lower case, with every other character an underscore.
fn item_name(source: &str, relative: &Path) -> String {
    let path = relative.to_string_lossy().to_lowercase();
    let cleaned: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{source}_{cleaned}")
}

/// The category of a picture from its folder, in both packages' trees.
pub fn category_of(relative: &Path) -> String {
    let path = relative.to_string_lossy().to_lowercase();
    let has = |part: &str| path.split('/').any(|p| p == part);
    let category = if has("birds") {
        "bird"
    } else if has("mammals") || has("marsupials") {
        "mammal"
    } else if has("insects")
        || has("bugs")
        || has("amphibians")
        || has("amphibian")
        || has("lizards")
    {
        "small creature"
    } else if has("music") {
        "instrument"
    } else if has("vehicles") || has("transportation") || has("space") {
        "vehicle"
    } else if has("household") || has("tools") || has("hobbies") {
        "household"
    } else if has("animals") {
        "other animal"
    } else if has("food") || has("plants") {
        "food and plant"
    } else {
        "other"
    };
    category.to_string()
}

/// Items that are variants of one thing (`pig`, `pig_golden2`; `scissors_small_open`, `..._closed`;
/// `Cow` and `cow_ack1` in two games) share a group, and a group is held out whole: no picture or sound of
/// a test item reaches training.
///
/// Picture packages name a file after its thing first (`pig_golden2`): the first word is the group. Games name
/// their sounds and portraits with a prefix (`death_horse_10`, `fauna_cow`, `01_cat`), found by their
/// installed paths (`usr/...`): there the whole name less its number and extension is.
pub fn group_of(item: &Item) -> String {
    let file = source_file(item);
    let installed = item
        .source
        .split_once(':')
        .is_some_and(|(_, path)| path.starts_with("usr/"));
    let name = if installed {
        without_extension(file)
    } else {
        file.split(['_', '-', ' ']).next().unwrap_or(file)
    };
    name.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '_' | '-' | ' '))
        .to_lowercase()
}

/// `cattle_01.ogg` as `cattle_01`, `fauna_cow.png.cached.dds` as `fauna_cow`; a name without an extension
/// (an OpenSFX title) as it is.
fn without_extension(file: &str) -> &str {
    match file.split_once('.') {
        Some((stem, extension))
            if extension.split('.').all(|part| {
                (2..=6).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
            }) =>
        {
            stem
        }
        _ => file,
    }
}

/// The file an item came from, without folder or extension: `violin_ganson` for
/// `openclipart-png:recreation/music/violin_ganson` (the item's name when its source names no file).
fn source_file(item: &Item) -> &str {
    let source_path = item
        .source
        .split_once(':')
        .map_or(item.name.as_str(), |(_, path)| path);
    source_path
        .rsplit(['/', super::labels::ARCHIVE_ENTRY])
        .next()
        .unwrap_or(source_path)
}

/// The fine label the table gives `source`, when the build gives labels; else none.
fn fine_label(labels: Option<&LabelTable>, source: &str) -> String {
    labels
        .and_then(|table| table.label_of(source))
        .unwrap_or_default()
        .to_string()
}

/// Where a held-out group is held out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In the label (or category) it was drawn for: the builds before fine labels.
    InItsOwnKey,
    /// Wherever it occurs: a group is one thing (`cow`, `violin`), and no picture or sound of a held-out
    /// thing may reach training under another label or none.
    EverywhereItOccurs,
}

/// Holds out one group in `every` of each fine label (of each category, for items without one) that has at
/// least three groups. Returns the groups.
fn hold_out(mut items: Vec<&mut Item>, every: usize, scope: Held) -> BTreeSet<String> {
    let key = |item: &Item| {
        if item.label.is_empty() {
            format!("category {}", item.category)
        } else {
            item.label.clone()
        }
    };
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in &items {
        groups.entry(key(item)).or_default().insert(group_of(item));
    }
    let held: BTreeSet<(String, String)> = groups
        .iter()
        .filter(|(_, label_groups)| label_groups.len() >= 3)
        .flat_map(|(key, label_groups)| {
            label_groups
                .iter()
                .enumerate()
                .filter(|(index, _)| index % every == every / 2)
                .map(|(_, group)| (key.clone(), group.clone()))
        })
        .collect();
    let held_groups: BTreeSet<String> = held.iter().map(|(_, group)| group.clone()).collect();
    for item in items.iter_mut() {
        let group = group_of(item);
        let is_held = match scope {
            Held::InItsOwnKey => held.contains(&(key(item), group)),
            Held::EverywhereItOccurs => held_groups.contains(&group),
        };
        if is_held {
            item.split = Split::Test;
        }
    }
    held_groups
}

/// Holds out the pictures without a sound of the groups `held` (the held-out sounds' things), and then one
/// group in `every` of each fine label among the other labelled ones: the pictures the image encoder's
/// neighbour measure is judged on.
fn hold_out_pictures(image_only: &mut [Item], held: &BTreeSet<String>, every: usize) {
    let mut labelled = Vec::new();
    for item in image_only.iter_mut() {
        if held.contains(&group_of(item)) {
            item.split = Split::Test;
        } else if !item.label.is_empty() {
            labelled.push(item);
        }
    }
    hold_out(labelled, every, Held::EverywhereItOccurs);
}

/// The held-out items of the build at `earlier`.
fn held_out_items(earlier: &Path) -> Result<Vec<Item>> {
    let items = read_items(&earlier.join(PAIRS_CSV))
        .with_context(|| format!("reading the split to keep from {}", earlier.display()))?;
    let held_out: Vec<Item> = items
        .into_iter()
        .filter(|i| i.split == Split::Test)
        .collect();
    if held_out.is_empty() {
        bail!(
            "{} holds no item out: there is no split to keep",
            earlier.display()
        );
    }
    Ok(held_out)
}

/// Holds out exactly `held_out`, the items held out in the build at `earlier` (matched by source), and drops
/// the other pairs of their groups (with their files), which would otherwise put a held-out thing into
/// training.
fn keep_split(
    pairs: &mut Vec<Item>,
    held_out: &[Item],
    earlier: &Path,
    out: &Path,
    summary: &mut BuildSummary,
) -> Result<()> {
    let sources: HashSet<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    for item in held_out {
        if !sources.contains(item.source.as_str()) {
            bail!(
                "{}'s held-out item {} ({}) is not in this build: was it made from other packages?",
                earlier.display(),
                item.name,
                item.source
            );
        }
    }
    let held_sources: HashSet<&str> = held_out.iter().map(|i| i.source.as_str()).collect();
    let held_groups: HashSet<String> = held_out.iter().map(group_of).collect();
    let mut kept = Vec::with_capacity(pairs.len());
    for mut item in pairs.drain(..) {
        let group = group_of(&item);
        if held_sources.contains(item.source.as_str()) {
            item.split = Split::Test;
        } else if held_groups.contains(&group) {
            for file in [
                pair_image_path(out, &item.name),
                pair_audio_path(out, &item.name),
            ] {
                std::fs::remove_file(&file)
                    .with_context(|| format!("removing {}", file.display()))?;
            }
            summary.skipped.push(format!(
                "{}: its group `{group}` is held out in {}",
                item.name,
                earlier.display()
            ));
            continue;
        } else {
            item.split = Split::Train;
        }
        kept.push(item);
    }
    *pairs = kept;
    Ok(())
}

/// Decodes any supported audio, brings it to 16 kHz mono and writes 16-bit PCM WAV.
fn convert_audio(source: &Path, target: &Path) -> Result<()> {
    let bytes = std::fs::read(source)?;
    convert_audio_bytes(&bytes, source.extension().and_then(|e| e.to_str()), target)
}

fn convert_audio_bytes(bytes: &[u8], hint: Option<&str>, target: &Path) -> Result<()> {
    let decoded = decode_audio(bytes, hint)?;
    write_wav(
        &resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?,
        target,
    )
}

/// 16 kHz mono samples as 16-bit PCM WAV.
fn write_wav(samples: &[f64], target: &Path) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(target, spec)?;
    for &s in samples {
        writer.write_sample((s.clamp(-1.0, 1.0) * f64::from(i16::MAX)).round() as i16)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Composites a (transparent) picture onto white, pads it to a square and stores it at [`STORED_SIZE`].
fn convert_image(source: &Path, target: &Path) -> Result<()> {
    // Some clip art is drawn at poster size: allow more than the decoder's default 512 MiB.
    let mut reader = image::ImageReader::open(source)?.with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    save_picture(&reader.decode()?, target)
}

fn save_picture(picture: &DynamicImage, target: &Path) -> Result<()> {
    square_on_white(picture, STORED_SIZE).save_with_format(target, image::ImageFormat::Jpeg)?;
    Ok(())
}

pub fn square_on_white(picture: &DynamicImage, size: u32) -> RgbImage {
    let (w, h) = picture.dimensions();
    let side = w.max(h).max(1);
    let rgba = picture.to_rgba8();
    let mut canvas: RgbImage = ImageBuffer::from_pixel(side, side, Rgb([255, 255, 255]));
    let (dx, dy) = ((side - w) / 2, (side - h) / 2);
    for (x, y, p) in rgba.enumerate_pixels() {
        let a = f32::from(p[3]) / 255.0;
        let blend = |c: u8| (f32::from(c) * a + 255.0 * (1.0 - a)).round() as u8;
        canvas.put_pixel(x + dx, y + dy, Rgb([blend(p[0]), blend(p[1]), blend(p[2])]));
    }
    image::imageops::resize(&canvas, size, size, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_already_given_gets_the_first_free_suffix() {
        let mut taken = TakenNames::default();
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x");
        assert_eq!(taken.claim("openclipart_x_2".into()), "openclipart_x_2");
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x_3");
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x_4");
        assert_eq!(taken.claim("openclipart_y".into()), "openclipart_y");
    }

    #[test]
    fn licences_come_from_the_readmes_beside_the_resources() {
        let readme = Resource {
            path: "a/resource/README".into(),
            data: b"drum_kit.ogg: http://www.freesound.org/x?id=29534  Creative Commons Sampling Plus 1.0 \
                    License.\nall other ogg files are released under the GPL\n\nCopyright: 2020 T. G.\n\
                    License: CC-BY-SA 4.0\nFiles:\ncat.svg\ndog.svg\n\nCopyright: B. C.\nLicense: GPLv3\n\
                    Files:\ncat.ogg\n"
                .to_vec(),
        };
        let licences = resource_licences(&[readme]);
        let get = |file: &str| {
            licences
                .get(&format!("a/resource/{file}"))
                .map(String::as_str)
        };
        assert_eq!(
            get("drum_kit.ogg"),
            Some("Creative Commons Sampling Plus 1.0 License.")
        );
        assert_eq!(get("cat.svg"), Some("CC-BY-SA 4.0"));
        assert_eq!(get("dog.svg"), Some("CC-BY-SA 4.0"));
        assert_eq!(get("cat.ogg"), Some("GPLv3"));
        assert_eq!(get("dog.ogg"), None);
    }

    #[test]
    fn licences_are_read_from_machine_readable_and_plain_copyright_files() {
        assert_eq!(
            licence_in("Format: ...\nFiles: *\nLicense: GPL-2\n").as_deref(),
            Some("GPL-2")
        );
        // fluid-soundfont-gm: an empty field, then the text.
        let fluid = "License:\n\n From README:\n  \"I hereby release Fluid under the MIT license, as\n described in COPYING.\"\n  samples found in the public domain";
        assert_eq!(licence_in(fluid).as_deref(), Some("MIT"));
        // openclipart-png.
        let clipart = "Copyright:\n\n creative commons Public Domain Dedication\n";
        assert_eq!(licence_in(clipart).as_deref(), Some("public domain"));
        assert_eq!(licence_in("Copyright: someone\n"), None);
        // wesnoth-1.16-data: the GPL first, a bundled library's Apache licence later.
        let wesnoth = "License:\n  it under the terms of the GNU General Public License version 2\n  or at your \
                       option any later version.\n\n  Licensed under the Apache License, Version 2.0\n";
        assert_eq!(licence_in(wesnoth).as_deref(), Some("GPL-2+"));
    }

    #[test]
    fn categories_follow_both_packages_folders() {
        assert_eq!(category_of(Path::new("animals/birds/crow")), "bird");
        assert_eq!(
            category_of(Path::new("animals/mammals/cats/lion")),
            "mammal"
        );
        assert_eq!(
            category_of(Path::new("hobbies/music/string/cello")),
            "instrument"
        );
        assert_eq!(category_of(Path::new("transportation/airplane")), "vehicle");
        assert_eq!(category_of(Path::new("household/tools/saw")), "household");
        assert_eq!(category_of(Path::new("seasonal/christmas/gift")), "other");
    }

    #[test]
    fn variants_of_one_thing_are_held_out_together() {
        let item = |path: &str| Item {
            name: item_name("tuxpaint", Path::new(path)),
            category: "mammal".into(),
            label: String::new(),
            source: format!("{TUXPAINT_PACKAGE}:{path}"),
            licence: "GPL-2".into(),
            split: Split::Train,
        };
        let mut pairs: Vec<Item> = [
            "m/pig",
            "m/pig_golden",
            "m/pig_golden2",
            "m/cow",
            "m/cow_white",
            "m/horse",
            "m/zebra",
            "m/lion",
            "m/tiger",
        ]
        .iter()
        .map(|p| item(p))
        .collect();
        hold_out(pairs.iter_mut().collect(), 3, Held::InItsOwnKey);
        let test: Vec<&str> = pairs
            .iter()
            .filter(|i| i.split == Split::Test)
            .map(|i| i.source.as_str())
            .collect();
        assert!(!test.is_empty());
        for group in ["pig", "cow"] {
            let held: Vec<bool> = pairs
                .iter()
                .filter(|i| group_of(i) == group)
                .map(|i| i.split == Split::Test)
                .collect();
            assert!(held.iter().all(|h| *h == held[0]), "{group} split apart");
        }
    }

    #[test]
    fn games_files_are_grouped_by_their_whole_name_less_its_number() {
        let group = |source: &str| {
            group_of(&Item {
                name: "x".into(),
                category: "mammal".into(),
                label: String::new(),
                source: source.into(),
                licence: String::new(),
                split: Split::Train,
            })
        };
        let zip = "0ad-data:usr/share/games/0ad/public.zip!audio/actor/fauna";
        assert_eq!(
            group(&format!("{zip}/death/death_horse_10.ogg")),
            "death_horse"
        );
        assert_eq!(group(&format!("{zip}/animal/cattle_01.ogg")), "cattle");
        assert_eq!(group(&format!("{zip}/animal/horse_11.ogg")), "horse");
        assert_eq!(
            group("0ad-data:usr/share/0ad/public.zip!art/portraits/fauna_cow.png.cached.dds"),
            "fauna_cow"
        );
        assert_eq!(
            group("gcompris-qt-data:usr/share/x/memory.rcc!a/b/01_cat.svg"),
            "01_cat"
        );
        assert_eq!(
            group("openttd-opensfx:usr/share/x/opensfx.cat!Tropical: Bird (1)"),
            "tropical: bird (1)"
        );
        assert_eq!(group("openttd-opensfx:usr/share/x/opensfx.cat!Cow"), "cow");
        // Picture packages: the first word, as before.
        assert_eq!(
            group("tuxpaint-stamps-default:animals/mammals/pig_golden2"),
            "pig"
        );
    }

    #[test]
    fn transparent_pictures_land_on_white_squares() {
        let mut picture = image::RgbaImage::new(4, 2);
        picture.put_pixel(0, 0, image::Rgba([0, 0, 0, 255]));
        let square = square_on_white(&DynamicImage::ImageRgba8(picture), 8);
        assert_eq!(square.dimensions(), (8, 8));
        assert_eq!(square.get_pixel(7, 7), &Rgb([255, 255, 255]));
        assert!(
            square.get_pixel(0, 2)[0] < 128,
            "the opaque black pixel survives"
        );
    }
}
