//! The notice that goes beside a model's weights: which packages its training data came from, under which
//! licences, the credit each asks for, and what that means for the weights.
//!
//! The project treats trained weights as a work based on every training item, the cautious reading: an item
//! whose licence asks that works based on it keep that licence (the GPL, CC-BY-SA, the Free Art License) then
//! binds the weights. Only the training split counts; held-out items judge a model and never reach its
//! weights. Licences are read from `items.csv` as the builder recorded them (each file's own, with its
//! credit), so the notice of a build is exactly as good as that record, and a licence this module cannot
//! classify is listed for review, never guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use super::build::downloaded_deb;
use super::copyright::{Copyright, copyright_file};
use super::licence_policy::{WeightsLicence, terms_of_part};
use super::{DEBS_DIR, Dataset, Item, Split, UNPACKED_DIR};

/// What a licence asks of a work based on the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Terms {
    /// Public domain, CC0: nothing.
    Nothing,
    /// MIT, the Artistic License, CC-BY: credit (and the licence text) travel with the work.
    Credit,
    /// GPL, CC-BY-SA, Free Art: the work is shared under the same licence.
    ShareAlike,
    /// A licence this module does not know: someone must read it.
    Unknown,
}

/// The terms of one recorded licence; a pair's record (`sound: X; picture: Y`) asks what both parts ask.
pub fn terms_of(licence: &str) -> Terms {
    record_parts(licence)
        .into_iter()
        .map(terms_of_part)
        .max()
        .unwrap_or(Terms::Unknown)
}

/// The licences in a record: a pair's `sound: X; picture: Y` gives X and Y (a credit may hold `;` too),
/// anything else is one licence.
pub(super) fn record_parts(licence: &str) -> Vec<&str> {
    let trimmed = licence.trim_start();
    let Some(rest) = trimmed
        .strip_prefix("sound:")
        .or_else(|| trimmed.strip_prefix("picture:"))
    else {
        return vec![licence.trim()];
    };
    rest.split("; sound:")
        .flat_map(|part| part.split("; picture:"))
        .map(str::trim)
        .collect()
}

/// The share-alike licence of a record's part, named as the record names it without the credit: `GPL-2+`,
/// `CC-BY-SA-3.0`.
fn share_alike_licences(licence: &str) -> Vec<String> {
    record_parts(licence)
        .into_iter()
        .filter(|part| terms_of_part(part) == Terms::ShareAlike)
        .map(|part| {
            part.split_once(" (")
                .map_or(part, |(name, _)| name)
                .trim()
                .to_string()
        })
        .collect()
}

/// The items that trained a model built from `dataset`, by package.
fn training_items_by_package(dataset: &Dataset) -> BTreeMap<&str, Vec<&Item>> {
    let mut packages: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    let all = dataset
        .pairs
        .iter()
        .chain(&dataset.image_only)
        .chain(&dataset.audio_only);
    for item in all.filter(|i| i.split == Split::Train) {
        let package = item
            .source
            .split_once(':')
            .map_or(item.source.as_str(), |(p, _)| p);
        packages.entry(package).or_default().push(item);
    }
    packages
}

/// The version of `package` among the downloaded `.deb` files (`name_1%3a0.18+dfsg-19_all.deb`).
fn package_version(debs: &Path, package: &str) -> Option<String> {
    let deb = downloaded_deb(debs, package).ok()??;
    let rest = deb.file_name()?.to_str()?.strip_prefix(package)?;
    let (version, _arch) = rest
        .strip_prefix('_')?
        .strip_suffix(".deb")?
        .rsplit_once('_')?;
    Some(version.replace("%3a", ":"))
}

/// Who holds the copyright of `package` as a whole, from its DEP-5 `copyright` file under `unpacked`.
fn package_copyright(unpacked: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(copyright_file(unpacked, package)).ok()?;
    let copyright = Copyright::parse(&text)?.whole_package()?.copyright.clone();
    (!copyright.is_empty()).then_some(copyright)
}

/// The notice, in Markdown, for weights trained on `dataset`'s training split. The packages' versions come
/// from the build's `debs/`, their copyright holders from the packages unpacked in `unpacked` (the build's
/// own `unpacked/` when `None`), where they are there.
pub fn data_notice(dataset: &Dataset, unpacked: Option<&Path>) -> String {
    let debs = dataset.root.join(DEBS_DIR);
    let unpacked = unpacked.map_or_else(|| dataset.root.join(UNPACKED_DIR), Path::to_path_buf);
    let packages = training_items_by_package(dataset);
    let training = |items: &[Item]| items.iter().filter(|i| i.split == Split::Train).count();
    let mut notice = String::from("# The data behind these weights\n\n");
    let _ = writeln!(
        notice,
        "These weights were trained by `s2v train` on a data set that `s2v data build-default` built from \
         Debian packages: {} pairs of a sound and its own picture, {} pictures without a sound and {} sounds \
         without a picture, from {} packages. Held-out items only judge the model and are not counted. Each \
         item's licence and credit are as the package states them for that file (its `copyright` file, or the \
         package's own description of the file).\n",
        training(&dataset.pairs),
        training(&dataset.image_only),
        training(&dataset.audio_only),
        packages.len()
    );
    notice.push_str("## What applies to the weights\n\n");
    notice.push_str(&verdict(&packages));
    notice.push_str("\n## Packages\n");
    for (package, items) in &packages {
        let mut licences: BTreeMap<&str, usize> = BTreeMap::new();
        for item in items {
            *licences.entry(item.licence.as_str()).or_default() += 1;
        }
        let version = package_version(&debs, package).map_or(String::new(), |v| format!(" {v}"));
        let _ = writeln!(notice, "\n### {package}{version}\n");
        if let Some(holders) = package_copyright(&unpacked, package) {
            let _ = writeln!(
                notice,
                "Copyright {holders} (the package's `copyright` file, for the files no narrower entry \
                 names).\n"
            );
        }
        let _ = writeln!(
            notice,
            "{} training items.\n\n| licence and credit | items |\n| --- | ---: |",
            items.len()
        );
        for (licence, count) in licences {
            // A table cell is one line, and `|` would end it.
            let cell = licence.replace('|', "\\|").replace(['\n', '\r'], " ");
            let _ = writeln!(notice, "| {cell} | {count} |");
        }
    }
    notice
}

/// What the licences together mean for the weights.
fn verdict(packages: &BTreeMap<&str, Vec<&Item>>) -> String {
    // Each distinct record is classified once.
    let records: BTreeSet<&str> = packages
        .values()
        .flatten()
        .map(|i| i.licence.as_str())
        .collect();
    let terms: Vec<(&str, Terms)> = records.iter().map(|&l| (l, terms_of(l))).collect();
    let unknown: BTreeSet<&str> = terms
        .iter()
        .filter(|(_, t)| *t == Terms::Unknown)
        .map(|(l, _)| *l)
        .collect();
    let share_alike: BTreeSet<String> = records
        .iter()
        .flat_map(|l| share_alike_licences(l))
        .collect();
    let credit = terms.iter().any(|(_, t)| *t == Terms::Credit);
    let mut text = String::new();
    if !unknown.is_empty() {
        let _ = writeln!(
            text,
            "Some items carry a licence this notice cannot classify; read them before distributing the weights:\n"
        );
        for licence in &unknown {
            let _ = writeln!(text, "- {licence}");
        }
        text.push('\n');
    }
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
    match share_alike.len() {
        0 => text.push_str(
            "No training item asks that a work based on it keep its licence: the weights are under the \
             project's licence, MIT OR Apache-2.0.",
        ),
        1 => {
            let _ = write!(
                text,
                "The weights are a work based on items under {0}, which asks that such a work be shared under \
                 the same licence: the weights are distributed under {0}.",
                list(&share_alike)
            );
        }
        _ => {
            let _ = write!(
                text,
                "Items come under more than one share-alike licence ({}). Each asks that a work based on it \
                 be shared under its own terms, so the weights can be distributed only under a licence that \
                 all of them allow. ",
                list(&share_alike)
            );
            let gpl = WeightsLicence::Gpl3OrLater;
            let refused = packages
                .values()
                .flatten()
                .filter(|item| gpl.refusal(&item.licence).is_some())
                .count();
            if refused == 0 {
                let _ = write!(
                    text,
                    "Every training item's licence allows {gpl}: the weights are distributed under {gpl}."
                );
            } else {
                let _ = write!(
                    text,
                    "{refused} training items come under licences that do not allow {gpl}, and where two \
                     of the licences are incompatible no licence allows them all: weights trained on this \
                     build must not be distributed until the items under one of them are left out \
                     (`s2v data build-default --weights-licence` leaves out what a chosen licence does \
                     not allow)."
                );
            }
        }
    }
    if credit || !share_alike.is_empty() {
        text.push_str(" The credits below go with the weights, as the licences ask.");
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recorded_licence_is_classified_by_what_it_asks() {
        for (licence, terms) in [
            ("GPL-2", Terms::ShareAlike),
            ("GPL-2+ (2003 Brailcom)", Terms::ShareAlike),
            ("CC-BY-SA-3.0 (2010 Wildfire Games)", Terms::ShareAlike),
            ("free-art (Lionel Allorge; Yves Combe)", Terms::ShareAlike),
            ("public domain", Terms::Nothing),
            ("public-domain (Not copyrighted)", Terms::Nothing),
            ("CC0 (2011 dio_333)", Terms::Nothing),
            (
                "Original \"x.wav\" by \"y\". License: Creative Commons Zero 1.0",
                Terms::Nothing,
            ),
            ("CC-BY-3.0 (Dr. Richard Boulanger et al)", Terms::Credit),
            (
                "By Janis Lukss. License: Creative Commons Attribution 3.0 Unported.",
                Terms::Credit,
            ),
            (
                "Artistic-1.0 (1997-2004 Hansjoerg Malthaner)",
                Terms::Credit,
            ),
            ("MIT (2016 Samuel Aaron)", Terms::Credit),
            (
                "Creative Commons Sampling Plus 1.0 License.",
                Terms::Unknown,
            ),
            (
                "picture: public domain; sound: MIT (fluid-soundfont-gm: Trumpet)",
                Terms::Credit,
            ),
            ("sound: GPL-3+; picture: GPLv3", Terms::ShareAlike),
            ("Commit Smith's licence", Terms::Unknown),
            ("Mitchell's licence, gplish", Terms::Unknown),
            ("CC-BY-NC-3.0 (x)", Terms::Unknown),
        ] {
            assert_eq!(terms_of(licence), terms, "{licence}");
        }
    }

    /// An item of a package (`package:thing`), named after its thing.
    fn item(source: &str, licence: &str, split: Split) -> Item {
        Item {
            name: source
                .split_once(':')
                .map_or(source, |(_, thing)| thing)
                .into(),
            category: "animal".into(),
            label: String::new(),
            source: source.into(),
            licence: licence.into(),
            split,
        }
    }

    fn dataset(pairs: Vec<Item>, image_only: Vec<Item>) -> Dataset {
        Dataset {
            root: "data".into(),
            pairs,
            image_only,
            audio_only: Vec::new(),
        }
    }

    #[test]
    fn one_share_alike_licence_binds_the_weights_and_held_out_items_do_not_count() {
        let notice = data_notice(
            &dataset(
                vec![
                    item("tuxpaint-stamps-default:cow", "GPL-2", Split::Train),
                    item("tuxpaint-stamps-default:horse", "GPL-2", Split::Train),
                    item(
                        "0ad-data:wolf",
                        "CC-BY-SA-3.0 (Wildfire Games)",
                        Split::Test,
                    ),
                ],
                vec![item("openclipart-png:dog", "public domain", Split::Train)],
            ),
            None,
        );
        assert!(
            notice.contains("the weights are distributed under GPL-2."),
            "{notice}"
        );
        assert!(
            !notice.contains("CC-BY-SA") && !notice.contains("0ad-data"),
            "{notice}"
        );
        assert!(
            notice.contains("2 pairs of a sound and its own picture, 1 pictures"),
            "{notice}"
        );
        assert!(
            notice.contains("### tuxpaint-stamps-default\n\n2 training items."),
            "{notice}"
        );
        assert!(notice.contains("| GPL-2 | 2 |"), "{notice}");
        assert!(
            notice.contains("### openclipart-png\n\n1 training items."),
            "{notice}"
        );
    }

    #[test]
    fn two_share_alike_licences_are_named_as_a_conflict() {
        let notice = data_notice(
            &dataset(
                vec![
                    item("tuxpaint-stamps-default:cow", "GPL-2", Split::Train),
                    item(
                        "0ad-data:wolf",
                        "CC-BY-SA-3.0 (Wildfire Games)",
                        Split::Train,
                    ),
                ],
                Vec::new(),
            ),
            None,
        );
        assert!(
            notice.contains("more than one share-alike licence (CC-BY-SA-3.0, GPL-2)"),
            "{notice}"
        );
        assert!(notice.contains("must not be distributed"), "{notice}");
        assert!(
            notice.contains(
                "2 training items come under licences that do not allow GPL-3.0-or-later"
            ),
            "{notice}"
        );
        // The credit a CC licence asks for is there.
        assert!(
            notice.contains("| CC-BY-SA-3.0 (Wildfire Games) | 1 |"),
            "{notice}"
        );
    }

    #[test]
    fn share_alike_licences_that_all_allow_gpl_3_give_gpl_3() {
        let notice = data_notice(
            &dataset(
                vec![
                    item("tuxpaint-stamps-default:cow", "GPL-2+", Split::Train),
                    item(
                        "gcompris-qt-data:drum",
                        "sound: GPLv3; picture: CC0-1.0",
                        Split::Train,
                    ),
                    item("gcompris-qt-data:cat", "CC-BY-SA 4.0", Split::Train),
                ],
                Vec::new(),
            ),
            None,
        );
        assert!(
            notice.contains("the weights are distributed under GPL-3.0-or-later."),
            "{notice}"
        );
        assert!(!notice.contains("must not be distributed"), "{notice}");
    }

    #[test]
    fn without_share_alike_the_projects_licence_applies_with_the_credits() {
        let notice = data_notice(
            &dataset(
                vec![item(
                    "fluid-soundfont-gm:trumpet",
                    "picture: public domain; sound: MIT (Frank Wen)",
                    Split::Train,
                )],
                vec![item("openclipart-png:dog", "public domain", Split::Train)],
            ),
            None,
        );
        assert!(notice.contains("MIT OR Apache-2.0"), "{notice}");
        assert!(
            notice.contains("The credits below go with the weights"),
            "{notice}"
        );
        assert!(notice.contains("MIT (Frank Wen)"), "{notice}");
    }

    #[test]
    fn a_licence_nobody_classified_is_listed_for_review() {
        let sampling = "Creative Commons Sampling Plus 1.0 License.";
        let notice = data_notice(
            &dataset(
                vec![item("sound-icons:bell", sampling, Split::Train)],
                Vec::new(),
            ),
            None,
        );
        assert!(
            notice.contains(&format!(
                "cannot classify; read them before distributing the weights:\n\n- {sampling}"
            )),
            "{notice}"
        );
    }

    #[test]
    fn a_pairs_record_splits_into_its_sounds_and_pictures_licences_only() {
        assert_eq!(
            record_parts("sound: GPL-2+ (A; B); picture: public domain"),
            ["GPL-2+ (A; B)", "public domain"]
        );
        assert_eq!(record_parts("free-art (A; B)"), ["free-art (A; B)"]);
    }

    #[test]
    fn share_alike_licences_are_named_without_their_credit() {
        assert_eq!(
            share_alike_licences("sound: GPL-3+; picture: CC-BY-SA-3.0 (2010 Wildfire Games)"),
            ["GPL-3+", "CC-BY-SA-3.0"]
        );
        assert!(share_alike_licences("picture: public domain; sound: MIT (x)").is_empty());
    }
}
