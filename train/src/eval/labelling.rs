//! What the evaluation counts as "the same thing": the fine labels where the data set has them (a held-out
//! sound with a label), else the coarse categories of data sets built before labels.

use crate::dataset::{Dataset, Item, Split};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labelling {
    /// Items are judged by their fine label; items without one take no part.
    FineLabels,
    /// Items are judged by their category.
    Categories,
}

impl Labelling {
    pub fn of(dataset: &Dataset) -> Self {
        let labelled = dataset
            .sounds_in(Split::Test)
            .iter()
            .any(|(_, item)| !item.label.is_empty());
        if labelled {
            Self::FineLabels
        } else {
            Self::Categories
        }
    }

    /// The class an item is judged by; `None` for an item without a fine label when judging by them.
    pub fn class_of(self, item: &Item) -> Option<&str> {
        match self {
            Self::FineLabels => Some(item.label.as_str()).filter(|label| !label.is_empty()),
            Self::Categories => Some(item.category.as_str()),
        }
    }

    /// The items of `items` that have a class, with it.
    pub fn classified<'a, T>(self, items: &'a [(T, &'a Item)]) -> Vec<(&'a T, &'a Item, &'a str)> {
        items
            .iter()
            .filter_map(|(thing, item)| Some((thing, *item, self.class_of(item)?)))
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FineLabels => "fine labels",
            Self::Categories => "categories",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, label: &str, split: Split) -> Item {
        Item {
            name: name.into(),
            category: "mammal".into(),
            label: label.into(),
            source: format!("p:{name}"),
            licence: "CC0".into(),
            split,
        }
    }

    #[test]
    fn a_labelled_held_out_sound_turns_on_fine_labels() {
        let mut dataset = Dataset {
            root: "/nowhere".into(),
            pairs: vec![item("a", "", Split::Test), item("b", "cow", Split::Train)],
            image_only: vec![],
            audio_only: vec![],
        };
        assert_eq!(Labelling::of(&dataset), Labelling::Categories);
        assert_eq!(
            Labelling::Categories.class_of(&dataset.pairs[0]),
            Some("mammal")
        );
        dataset.audio_only.push(item("moo", "cow", Split::Test));
        assert_eq!(Labelling::of(&dataset), Labelling::FineLabels);
        assert_eq!(Labelling::FineLabels.class_of(&dataset.pairs[0]), None);
        assert_eq!(
            Labelling::FineLabels.class_of(&dataset.audio_only[0]),
            Some("cow")
        );
    }
}
