//! The training data layout, Sound2Scene's: `images/<name>.jpg` and `audios/<name>.wav` (16 kHz mono) for the
//! paired items, `image_only/images/<name>.jpg` for the pictures without a sound, `audio_only/audios/<name>.wav`
//! for the sounds without a picture of their own (paired by fine label), and a CSV beside each listing name,
//! category, fine label, source, licence and split. Data prepared from VGGSound or VEGAS this way trains the
//! same code.

pub mod build;
pub mod clips;
pub mod copyright;
pub mod labels;
pub mod licence_policy;
pub mod notice;
pub mod packaged;
pub mod pictures;
pub mod qt_resources;
pub mod soundfont;
pub mod upstream_licences;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const PAIRS_CSV: &str = "items.csv";
pub const IMAGE_ONLY_DIR: &str = "image_only";
pub const AUDIO_ONLY_DIR: &str = "audio_only";
pub const IMAGES_DIR: &str = "images";
pub const AUDIOS_DIR: &str = "audios";
/// Where a build keeps the packages it downloaded and unpacked.
pub const DEBS_DIR: &str = "debs";
pub const UNPACKED_DIR: &str = "unpacked";

/// A paired item's picture under a data set's `root`.
pub fn pair_image_path(root: &Path, name: &str) -> PathBuf {
    root.join(IMAGES_DIR).join(format!("{name}.jpg"))
}

/// A paired item's sound under a data set's `root`.
pub fn pair_audio_path(root: &Path, name: &str) -> PathBuf {
    root.join(AUDIOS_DIR).join(format!("{name}.wav"))
}

/// An image-only item's picture under a data set's `root`.
pub fn image_only_image_path(root: &Path, name: &str) -> PathBuf {
    root.join(IMAGE_ONLY_DIR)
        .join(IMAGES_DIR)
        .join(format!("{name}.jpg"))
}

/// An audio-only item's sound under a data set's `root`.
pub fn audio_only_audio_path(root: &Path, name: &str) -> PathBuf {
    root.join(AUDIO_ONLY_DIR)
        .join(AUDIOS_DIR)
        .join(format!("{name}.wav"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// One row of a dataset CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub category: String,
    /// The fine label (`train/labels/vocabulary.csv`); empty where the reviewed table gives none, and in data
    /// sets built before labels.
    #[serde(default)]
    pub label: String,
    pub source: String,
    pub licence: String,
    pub split: Split,
}

/// A dataset folder: the paired items and the image-only set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub pairs: Vec<Item>,
    pub image_only: Vec<Item>,
    pub audio_only: Vec<Item>,
}

impl Dataset {
    pub fn open(root: &Path) -> Result<Self> {
        let pairs = read_items(&root.join(PAIRS_CSV))?;
        let optional = |dir: &str| {
            let csv = root.join(dir).join(PAIRS_CSV);
            if csv.exists() {
                read_items(&csv)
            } else {
                Ok(Vec::new())
            }
        };
        let dataset = Self {
            root: root.to_path_buf(),
            pairs,
            image_only: optional(IMAGE_ONLY_DIR)?,
            audio_only: optional(AUDIO_ONLY_DIR)?,
        };
        dataset.check()?;
        Ok(dataset)
    }

    pub fn pair_image(&self, item: &Item) -> PathBuf {
        pair_image_path(&self.root, &item.name)
    }

    pub fn pair_audio(&self, item: &Item) -> PathBuf {
        pair_audio_path(&self.root, &item.name)
    }

    pub fn image_only_image(&self, item: &Item) -> PathBuf {
        image_only_image_path(&self.root, &item.name)
    }

    pub fn audio_only_audio(&self, item: &Item) -> PathBuf {
        audio_only_audio_path(&self.root, &item.name)
    }

    pub fn pairs_in(&self, split: Split) -> impl Iterator<Item = &Item> {
        self.pairs.iter().filter(move |i| i.split == split)
    }

    /// Every training picture: the image-only set and the training pairs' pictures, as paths.
    pub fn training_images(&self) -> Vec<(PathBuf, &Item)> {
        self.image_only
            .iter()
            .filter(|i| i.split == Split::Train)
            .map(|i| (self.image_only_image(i), i))
            .chain(self.pairs_in(Split::Train).map(|i| (self.pair_image(i), i)))
            .collect()
    }

    /// Every picture the data set lists, of both splits: the pairs' in `items.csv` order, then the image-only
    /// set's in `image_only/items.csv` order. Embeddings given for training (`--target-embeddings`) have a
    /// row per picture in this order.
    pub fn listed_pictures(&self) -> Vec<(PathBuf, &Item)> {
        self.pairs
            .iter()
            .map(|i| (self.pair_image(i), i))
            .chain(
                self.image_only
                    .iter()
                    .map(|i| (self.image_only_image(i), i)),
            )
            .collect()
    }

    /// Every held-out picture: the held-out pairs' pictures and the held-out image-only set.
    pub fn held_out_images(&self) -> Vec<(PathBuf, &Item)> {
        self.image_only
            .iter()
            .filter(|i| i.split == Split::Test)
            .map(|i| (self.image_only_image(i), i))
            .chain(self.pairs_in(Split::Test).map(|i| (self.pair_image(i), i)))
            .collect()
    }

    /// The sounds of one split: the pairs' and the audio-only set's.
    pub fn sounds_in(&self, split: Split) -> Vec<(PathBuf, &Item)> {
        self.pairs_in(split)
            .map(|i| (self.pair_audio(i), i))
            .chain(
                self.audio_only
                    .iter()
                    .filter(move |i| i.split == split)
                    .map(|i| (self.audio_only_audio(i), i)),
            )
            .collect()
    }

    /// The categories of the paired items, sorted: the labels of the evaluation.
    pub fn categories(&self) -> Vec<String> {
        let mut categories: Vec<String> = self.pairs.iter().map(|i| i.category.clone()).collect();
        categories.sort();
        categories.dedup();
        categories
    }

    /// A held-out item must not leak into training through the image-only set.
    fn check(&self) -> Result<()> {
        let test: std::collections::HashSet<&str> = self
            .pairs_in(Split::Test)
            .map(|i| i.name.as_str())
            .collect();
        if let Some(leak) = self
            .image_only
            .iter()
            .find(|i| i.split == Split::Train && test.contains(i.name.as_str()))
        {
            bail!(
                "held-out item {} is also in the image-only training set",
                leak.name
            );
        }
        let pair_files = self
            .pairs
            .iter()
            .flat_map(|item| [(item, self.pair_image(item)), (item, self.pair_audio(item))]);
        let audio_only_files = self
            .audio_only
            .iter()
            .map(|item| (item, self.audio_only_audio(item)));
        for (item, path) in pair_files.chain(audio_only_files) {
            if !path.exists() {
                bail!(
                    "{} lists {} but {} is missing",
                    PAIRS_CSV,
                    item.name,
                    path.display()
                );
            }
        }
        Ok(())
    }
}

pub fn read_items(path: &Path) -> Result<Vec<Item>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    reader
        .deserialize()
        .map(|row| row.with_context(|| format!("a row of {}", path.display())))
        .collect()
}

pub fn write_items(path: &Path, items: &[Item]) -> Result<()> {
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    for item in items {
        writer.serialize(item)?;
    }
    writer.flush()?;
    Ok(())
}
