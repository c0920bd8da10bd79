//! The fine labels of the default model's data: a fixed vocabulary (`train/labels/vocabulary.csv`) and a
//! reviewed table (`train/labels/sources.csv`) that gives each packaged file its label by its path. Both are
//! compiled into the builder, so a build never guesses a label from a file name it has not been reviewed for.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

const VOCABULARY_CSV: &str = include_str!("../../labels/vocabulary.csv");
const SOURCES_CSV: &str = include_str!("../../labels/sources.csv");
/// The label that gives a file none.
const NO_LABEL: &str = "-";
/// Separates an archive's path from the path of an entry inside it in an item's source.
pub const ARCHIVE_ENTRY: char = '!';

/// The fine labels and the coarse category each belongs to.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    category_of: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct VocabularyRow {
    label: String,
    category: String,
}

impl Vocabulary {
    /// The vocabulary compiled into the builder.
    pub fn embedded() -> Result<Self> {
        Self::parse(VOCABULARY_CSV).context("train/labels/vocabulary.csv")
    }

    fn parse(text: &str) -> Result<Self> {
        let mut category_of = BTreeMap::new();
        for row in commented_csv(text).deserialize::<VocabularyRow>() {
            let row = row?;
            if category_of
                .insert(row.label.clone(), row.category)
                .is_some()
            {
                bail!("the label {} is listed twice", row.label);
            }
        }
        Ok(Self { category_of })
    }

    pub fn category_of(&self, label: &str) -> Option<&str> {
        self.category_of.get(label).map(String::as_str)
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.category_of.keys().map(String::as_str)
    }
}

/// The reviewed mapping from a file's source (`package:path`, with `archive!entry` inside archives) to its
/// fine label: globs, the first matching row deciding.
#[derive(Debug, Clone)]
pub struct LabelTable {
    globs: GlobSet,
    rows: Vec<SourceRow>,
}

#[derive(Debug, Clone, Deserialize)]
struct SourceRow {
    pattern: String,
    label: String,
}

impl LabelTable {
    /// The table compiled into the builder, checked against the vocabulary.
    pub fn embedded(vocabulary: &Vocabulary) -> Result<Self> {
        Self::parse(SOURCES_CSV, vocabulary).context("train/labels/sources.csv")
    }

    fn parse(text: &str, vocabulary: &Vocabulary) -> Result<Self> {
        let rows: Vec<SourceRow> = commented_csv(text)
            .deserialize()
            .collect::<Result<_, _>>()?;
        let mut globs = GlobSetBuilder::new();
        for row in &rows {
            if row.label != NO_LABEL && vocabulary.category_of(&row.label).is_none() {
                bail!("{}: {} is not in the vocabulary", row.pattern, row.label);
            }
            if !row.pattern.contains(':') {
                bail!("{}: a pattern starts with its package and `:`", row.pattern);
            }
            let glob = GlobBuilder::new(&entries_as_folders(&row.pattern))
                .case_insensitive(true)
                .literal_separator(true)
                .build()
                .with_context(|| format!("the pattern {}", row.pattern))?;
            globs.add(glob);
        }
        Ok(Self {
            globs: globs.build()?,
            rows,
        })
    }

    /// The fine label of the file at `source`; `None` where no row names it or its row gives it none.
    pub fn label_of(&self, source: &str) -> Option<&str> {
        let first = self
            .globs
            .matches(entries_as_folders(source))
            .into_iter()
            .min()?;
        Some(self.rows[first].label.as_str()).filter(|label| *label != NO_LABEL)
    }

    /// The packages the table names.
    pub fn packages(&self) -> BTreeSet<&str> {
        self.rows
            .iter()
            .filter_map(|row| row.pattern.split_once(':').map(|(package, _)| package))
            .collect()
    }

    /// Where in `package`'s tree the labelled files lie: for each row that gives a label to an installed
    /// path (`usr/...`; Tux Paint's and Openclipart's older rows name paths within their picture folders,
    /// which their own readers walk), the folder or archive before its first wildcard. A builder reads these,
    /// not the whole tree.
    pub fn search_roots(&self, package: &str) -> BTreeSet<SearchRoot> {
        self.rows
            .iter()
            .filter(|row| row.label != NO_LABEL)
            .filter_map(|row| row.pattern.strip_prefix(package)?.strip_prefix(':'))
            .filter(|path| path.starts_with(INSTALLED_ROOT))
            .map(search_root)
            .collect()
    }
}

/// A place to look for a table's files: a folder, walked to its depth, or an archive, read whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SearchRoot {
    Folder(String),
    Archive(String),
}

/// Where installed paths start.
const INSTALLED_ROOT: &str = "usr/";

/// `archive!entry` as `archive!/entry`, so that a pattern's `archive!**/name` finds the name at any depth of
/// the archive (globs take `**` as any folders only as a whole path component).
fn entries_as_folders(path: &str) -> String {
    path.replacen(ARCHIVE_ENTRY, "!/", 1)
}

fn search_root(path_pattern: &str) -> SearchRoot {
    let literal_end = path_pattern
        .find(['*', '?', '[', '{'])
        .unwrap_or(path_pattern.len());
    let literal = &path_pattern[..literal_end];
    if let Some((archive, _)) = literal.split_once(ARCHIVE_ENTRY) {
        return SearchRoot::Archive(archive.to_string());
    }
    let folder = literal.rfind('/').map_or("", |slash| &literal[..slash]);
    SearchRoot::Folder(folder.to_string())
}

fn commented_csv(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        Vocabulary::parse("label,category\ncow,mammal\nhorse,mammal\ntrain,vehicle\n").unwrap()
    }

    #[test]
    fn the_first_matching_row_decides_and_a_dash_gives_no_label() {
        let table = LabelTable::parse(
            "pattern,label\n# a comment\np:a/zebra*,-\np:a/*,horse\np:a/**,cow\n",
            &vocabulary(),
        )
        .unwrap();
        assert_eq!(table.label_of("p:a/pony"), Some("horse"));
        assert_eq!(table.label_of("p:a/ZEBRA_2"), None);
        assert_eq!(
            table.label_of("p:a/b/calf"),
            Some("cow"),
            "`*` stays in a folder"
        );
        assert_eq!(table.label_of("q:a/pony"), None, "another package");
    }

    #[test]
    fn entries_of_archives_and_alternatives_match() {
        let table = LabelTable::parse(
            "pattern,label\np:usr/sfx.cat!Steam train*,train\n\"p:usr/a.zip!s/{ox,cow}_*.ogg\",cow\n\
             p:usr/b.rcc!**/moo.ogg,cow\n",
            &vocabulary(),
        )
        .unwrap();
        assert_eq!(table.label_of("p:usr/sfx.cat!Steam train 2"), Some("train"));
        assert_eq!(table.label_of("p:usr/a.zip!s/ox_01.ogg"), Some("cow"));
        assert_eq!(table.label_of("p:usr/a.zip!s/pig_01.ogg"), None);
        assert_eq!(table.label_of("p:usr/b.rcc!moo.ogg"), Some("cow"));
        assert_eq!(table.label_of("p:usr/b.rcc!x/y/moo.ogg"), Some("cow"));
        assert_eq!(
            table.search_roots("p"),
            BTreeSet::from([
                SearchRoot::Archive("usr/sfx.cat".into()),
                SearchRoot::Archive("usr/a.zip".into()),
                SearchRoot::Archive("usr/b.rcc".into())
            ])
        );
    }

    #[test]
    fn search_roots_stop_before_the_first_wildcard_and_skip_unlabelled_and_older_rows() {
        let table = LabelTable::parse(
            "pattern,label\np:**/voice_*,-\np:usr/s/tilesets/*/sounds/cow.wav,cow\np:usr/s/horse.wav,horse\n\
             p:animals/cow*,cow\n",
            &vocabulary(),
        )
        .unwrap();
        assert_eq!(
            table.search_roots("p"),
            BTreeSet::from([
                SearchRoot::Folder("usr/s".into()),
                SearchRoot::Folder("usr/s/tilesets".into())
            ])
        );
    }

    #[test]
    fn a_label_outside_the_vocabulary_is_refused() {
        let error = LabelTable::parse("pattern,label\np:a/*,unicorn\n", &vocabulary()).unwrap_err();
        assert!(format!("{error:#}").contains("unicorn"));
    }

    #[test]
    fn the_embedded_tables_parse_and_agree() {
        let vocabulary = Vocabulary::embedded().unwrap();
        let table = LabelTable::embedded(&vocabulary).unwrap();
        assert!(vocabulary.labels().count() >= 40);
        assert!(table.packages().len() >= 10);
        assert_eq!(
            table.label_of("tuxpaint-stamps-default:animals/mammals/equines/zebra"),
            None
        );
        assert_eq!(
            table.label_of("tuxpaint-stamps-default:animals/mammals/equines/horse_brown"),
            Some("horse")
        );
    }
}
