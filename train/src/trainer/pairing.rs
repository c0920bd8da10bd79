//! Which pictures the label-aware stages treat as alike. The audio stage matches a sound with its own
//! picture where its item has one, and otherwise with a picture of its fine label drawn anew each step
//! (VGGSound's pairs are no tighter: a clip's frame shows its class, not its source). The image stage's
//! supervised contrastive loss takes pictures of one fine label as one class.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::Rng;
use rand::rngs::StdRng;

use crate::dataset::{Dataset, Item, Split};

/// The picture (an index into the training pictures) a training sound is matched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Own(usize),
    AnyOf(Vec<usize>),
}

impl Target {
    pub fn draw(&self, rng: &mut StdRng) -> usize {
        match self {
            Self::Own(picture) => *picture,
            Self::AnyOf(pictures) => pictures[rng.random_range(0..pictures.len())],
        }
    }
}

/// The audio stage's training sounds and what each is matched with.
#[derive(Debug, Default)]
pub struct SoundTargets {
    pub sounds: Vec<PathBuf>,
    pub targets: Vec<Target>,
    /// Sounds left out because no training picture has their label.
    pub unmatched: Vec<String>,
}

/// The training pairs with their own pictures, then the training sounds without a picture with the
/// pictures of their label among `pictures` (the training pictures, in order).
pub fn sound_targets(dataset: &Dataset, pictures: &[&Item]) -> SoundTargets {
    let index_of: BTreeMap<&str, usize> = pictures
        .iter()
        .enumerate()
        .map(|(i, item)| (item.name.as_str(), i))
        .collect();
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, item) in pictures.iter().enumerate() {
        if !item.label.is_empty() {
            by_label.entry(item.label.as_str()).or_default().push(i);
        }
    }
    let mut matched = SoundTargets::default();
    for item in dataset.pairs_in(Split::Train) {
        if let Some(&own) = index_of.get(item.name.as_str()) {
            matched.sounds.push(dataset.pair_audio(item));
            matched.targets.push(Target::Own(own));
        }
    }
    for item in dataset
        .audio_only
        .iter()
        .filter(|i| i.split == Split::Train)
    {
        match by_label.get(item.label.as_str()) {
            Some(same_label) => {
                matched.sounds.push(dataset.audio_only_audio(item));
                matched.targets.push(Target::AnyOf(same_label.clone()));
            }
            None => matched.unmatched.push(item.name.clone()),
        }
    }
    matched
}

/// A class per picture for supervised contrastive learning: one per fine label, and a class of its own for
/// each picture without a label (for which the loss is SimCLR's).
pub fn picture_classes(pictures: &[&Item]) -> Vec<usize> {
    let mut label_class: BTreeMap<&str, usize> = BTreeMap::new();
    for item in pictures.iter().filter(|item| !item.label.is_empty()) {
        let next = label_class.len();
        label_class.entry(item.label.as_str()).or_insert(next);
    }
    let labels = label_class.len();
    pictures
        .iter()
        .enumerate()
        .map(|(i, item)| {
            label_class
                .get(item.label.as_str())
                .copied()
                .unwrap_or(labels + i)
        })
        .collect()
}

/// A batch of `batch` picture indices for supervised contrastive learning. Where some class holds two or
/// more pictures, `paired_share` of the batch is pairs of pictures of randomly chosen such classes (a
/// uniform draw would rarely put two pictures of one label together among thousands of unlabelled ones) and
/// the rest is uniform; otherwise the whole batch is uniform, as SimCLR draws.
pub fn draw_batch(
    classes: &[usize],
    batch: usize,
    paired_share: f64,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (picture, &class) in classes.iter().enumerate() {
        members.entry(class).or_default().push(picture);
    }
    let shared: Vec<&Vec<usize>> = members.values().filter(|m| m.len() >= 2).collect();
    let mut chosen = Vec::with_capacity(batch);
    if !shared.is_empty() {
        let paired = (batch as f64 * paired_share.clamp(0.0, 1.0)) as usize;
        while chosen.len() + 2 <= paired {
            let class = shared[rng.random_range(0..shared.len())];
            let first = rng.random_range(0..class.len());
            let mut second = rng.random_range(0..class.len() - 1);
            if second >= first {
                second += 1;
            }
            chosen.extend([class[first], class[second]]);
        }
    }
    while chosen.len() < batch {
        chosen.push(rng.random_range(0..classes.len()));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn item(name: &str, label: &str) -> Item {
        Item {
            name: name.into(),
            category: "mammal".into(),
            label: label.into(),
            source: format!("p:{name}"),
            licence: "CC0".into(),
            split: Split::Train,
        }
    }

    #[test]
    fn pictures_of_a_label_share_a_class_and_the_rest_have_their_own() {
        let items = [
            item("a", "cow"),
            item("b", ""),
            item("c", "pig"),
            item("d", "cow"),
            item("e", ""),
        ];
        let refs: Vec<&Item> = items.iter().collect();
        let classes = picture_classes(&refs);
        assert_eq!(classes[0], classes[3]);
        assert_ne!(classes[0], classes[2]);
        let mut distinct = classes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{classes:?}");
    }

    #[test]
    fn batches_pair_pictures_of_a_class_when_classes_are_shared() {
        // Classes 0 and 1 have two pictures each; 2..=9 are pictures of their own.
        let classes = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut rng = StdRng::seed_from_u64(1);
        let batch = draw_batch(&classes, 8, 0.5, &mut rng);
        assert_eq!(batch.len(), 8);
        for pair in batch[..4].chunks(2) {
            assert_ne!(pair[0], pair[1], "two different pictures");
            assert_eq!(classes[pair[0]], classes[pair[1]], "of one class");
        }
        // Every class its own: a uniform draw.
        let unique: Vec<usize> = (0..12).collect();
        let batch = draw_batch(&unique, 8, 0.5, &mut StdRng::seed_from_u64(1));
        assert_eq!(batch.len(), 8);
        let uniform: Vec<usize> = {
            let mut rng = StdRng::seed_from_u64(1);
            (0..8).map(|_| rng.random_range(0..12)).collect()
        };
        assert_eq!(batch, uniform);
    }

    #[test]
    fn sounds_without_a_picture_get_pictures_of_their_label() {
        let dir = tempfile::tempdir().unwrap();
        let dataset = Dataset {
            root: dir.path().to_path_buf(),
            pairs: vec![item("pair_cow", "cow")],
            image_only: vec![item("drawn_cow", "cow"), item("drawn_pig", "pig")],
            audio_only: vec![item("moo", "cow"), item("neigh", "horse")],
        };
        let pictures = [
            item("drawn_cow", "cow"),
            item("drawn_pig", "pig"),
            item("pair_cow", "cow"),
        ];
        let refs: Vec<&Item> = pictures.iter().collect();
        let matched = sound_targets(&dataset, &refs);
        assert_eq!(
            matched.targets,
            vec![Target::Own(2), Target::AnyOf(vec![0, 2])]
        );
        assert_eq!(matched.unmatched, vec!["neigh".to_string()]);
        assert!(matched.sounds[1].ends_with("audio_only/audios/moo.wav"));
        let mut rng = StdRng::seed_from_u64(0);
        let drawn: Vec<usize> = (0..50).map(|_| matched.targets[1].draw(&mut rng)).collect();
        assert!(
            drawn.contains(&0) && drawn.contains(&2),
            "a new picture each draw"
        );
    }
}
