//! Which items may train weights that are to be distributed under a chosen licence.
//!
//! Weights are read as a work based on every training item (see `notice`), so an item may train them only
//! where its licence lets such a work go out under the weights' licence. The judgements are the published
//! ones, and where none is published the item is refused, never guessed:
//! - the FSF's licence list: the GPL's version 2 alone, the Artistic License 1.0, the Free Art License and
//!   the GFDL cannot be combined into a GPL-3 work; CC-BY 4.0 can;
//! - Creative Commons' compatibility declaration of 2015: CC-BY-SA 4.0 adaptations may go out under GPL-3
//!   (one way); earlier CC-BY-SA versions declare no compatible licence;
//! - a GPL named without a version lets its recipient choose any version (the GPL's section 14 and its
//!   version 2's section 9);
//! - CC-BY before 4.0 is declared compatible with no GPL, so a GPL build leaves it out; a permissive build
//!   keeps it and carries its credit.

use std::fmt;

use super::notice::Terms;

/// The licence that weights trained on a build are to be distributed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsLicence {
    /// GPL-3.0-or-later: items that ask for nothing or credit, and share-alike items whose licences allow
    /// the GPL's version 3.
    #[value(name = "gpl-3.0-or-later")]
    Gpl3OrLater,
    /// The project's own, MIT OR Apache-2.0: only items that ask for nothing or for credit.
    #[value(name = "mit-or-apache-2.0")]
    MitOrApache,
}

impl fmt::Display for WeightsLicence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gpl3OrLater => "GPL-3.0-or-later",
            Self::MitOrApache => "MIT OR Apache-2.0",
        })
    }
}

impl WeightsLicence {
    /// Why an item whose licence is recorded as `record` cannot train weights under this licence; `None`
    /// when it can. A pair's record (`sound: X; picture: Y`) is allowed when both parts are; an expression
    /// (`GPL-2+ or CDDL`) when one alternative is, or every part joined by `and`.
    pub fn refusal(self, record: &str) -> Option<String> {
        super::notice::record_parts(record)
            .into_iter()
            .find_map(|part| self.refuse_expression(licence_text(part)))
    }

    fn refuse_expression(self, expression: &str) -> Option<String> {
        let alternatives = split_words(expression, " or ");
        let refusals: Vec<String> = alternatives
            .iter()
            .filter_map(|alternative| {
                split_words(alternative, " and ")
                    .into_iter()
                    .find_map(|term| self.refuse_one(&Licence::identify(term)))
            })
            .collect();
        // Allowed when one alternative had nothing refused.
        (refusals.len() == alternatives.len()).then(|| refusals.join("; "))
    }

    fn refuse_one(self, licence: &Licence) -> Option<String> {
        use Licence::*;
        let allowed = match (self, licence) {
            (_, PublicDomain | Permissive(_)) => true,
            (Self::MitOrApache, CcBy(_)) => true,
            (Self::MitOrApache, _) => false,
            (Self::Gpl3OrLater, CcBy(version) | CcBySa(version)) => {
                version.as_deref() == Some("4.0")
            }
            (
                Self::Gpl3OrLater,
                Gnu {
                    family,
                    version,
                    or_later,
                },
            ) => {
                *family != GnuFamily::Affero
                    && match version {
                        None => true,
                        Some(v) => *v >= 3 || *or_later || *family == GnuFamily::Lesser,
                    }
            }
            (Self::Gpl3OrLater, Artistic2) => true,
            (Self::Gpl3OrLater, Artistic1 | FreeArt | Gfdl | Other(_)) => false,
        };
        (!allowed).then(|| format!("{licence} does not allow weights under {self}"))
    }
}

/// What one part of a record asks of a work based on the item (the notice's classification): of
/// alternatives (`or`) the least, of a conjunction (`and`) the most.
pub fn terms_of_part(part: &str) -> Terms {
    split_words(licence_text(part), " or ")
        .into_iter()
        .map(|alternative| {
            split_words(alternative, " and ")
                .into_iter()
                .map(|term| Licence::identify(term).terms())
                .max()
                .unwrap_or(Terms::Unknown)
        })
        .min()
        .unwrap_or(Terms::Unknown)
}

/// The licence named in one part of a record, without its credit: `CC-BY-SA-3.0 (2010 Wildfire Games)`
/// gives `CC-BY-SA-3.0`; OpenSFX's `Original "x.wav" by "y". License: Creative Commons Attribution 3.0
/// Unported.` gives what follows `License:`.
fn licence_text(part: &str) -> &str {
    let named = part
        .find("License:")
        .map_or(part, |at| &part[at + "License:".len()..]);
    named
        .split_once(" (")
        .map_or(named, |(name, _)| name)
        .trim()
        .trim_end_matches('.')
}

/// `text` split at `separator`, ignoring case.
fn split_words<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let lower = text.to_lowercase();
    // Lowercasing ASCII keeps byte offsets; a text where it would not is taken whole.
    if lower.len() != text.len() {
        return vec![text];
    }
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in lower.match_indices(separator) {
        parts.push(&text[start..at]);
        start = at + separator.len();
    }
    parts.push(&text[start..]);
    parts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GnuFamily {
    General,
    Lesser,
    Affero,
}

/// One licence, identified from how packages write its name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Licence {
    /// Public domain, CC0.
    PublicDomain,
    /// MIT (Expat), Zlib, Apache-2.0: credit and the licence's text go with the work.
    Permissive(&'static str),
    CcBy(Option<String>),
    CcBySa(Option<String>),
    Gnu {
        family: GnuFamily,
        version: Option<u8>,
        or_later: bool,
    },
    Artistic1,
    Artistic2,
    FreeArt,
    Gfdl,
    Other(String),
}

impl Licence {
    fn terms(&self) -> Terms {
        match self {
            Self::PublicDomain => Terms::Nothing,
            Self::Permissive(_) | Self::CcBy(_) | Self::Artistic1 | Self::Artistic2 => {
                Terms::Credit
            }
            Self::CcBySa(_) | Self::Gnu { .. } | Self::FreeArt | Self::Gfdl => Terms::ShareAlike,
            Self::Other(_) => Terms::Unknown,
        }
    }

    fn identify(term: &str) -> Self {
        // An exception only adds permissions to the licence it names.
        let lower = term.to_lowercase();
        let lower = lower.split(" with ").next().unwrap_or_default().trim();
        let canonical = canonical_name(lower);
        let name = canonical.as_str();
        if [
            "public domain",
            "public-domain",
            "cc0",
            "creative-commons-zero",
        ]
        .iter()
        .any(|p| name.starts_with(p))
        {
            return Self::PublicDomain;
        }
        for (prefix, permissive) in [
            ("mit", "MIT"),
            ("expat", "MIT"),
            ("zlib", "Zlib"),
            ("apache-2", "Apache-2.0"),
            ("apache2", "Apache-2.0"),
        ] {
            // The whole first word: `mitchell` is not MIT.
            let word_ends = |rest: &str| rest.chars().next().is_none_or(|c| matches!(c, '-' | '.'));
            if name.strip_prefix(prefix).is_some_and(word_ends) {
                return Self::Permissive(permissive);
            }
        }
        if let Some(rest) = name.strip_prefix("cc-by-sa") {
            return Self::CcBySa(cc_version(rest));
        }
        if let Some(rest) = name.strip_prefix("cc-by") {
            // CC-BY-NC, CC-BY-ND and the like restrict uses: for a person to weigh.
            let restricted = ["-nc", "-nd"].iter().any(|r| rest.starts_with(r));
            return match rest.chars().next() {
                None | Some('-') if !restricted => Self::CcBy(cc_version(rest)),
                _ => Self::Other(term.trim().to_string()),
            };
        }
        for (prefix, family) in [
            ("lgpl", GnuFamily::Lesser),
            ("agpl", GnuFamily::Affero),
            ("gpl", GnuFamily::General),
        ] {
            if let Some(licence) = name.strip_prefix(prefix).and_then(|rest| gnu(family, rest)) {
                return licence;
            }
        }
        match name {
            "artistic-1.0" | "artistic" => Self::Artistic1,
            "artistic-2.0" => Self::Artistic2,
            "free-art" | "free-art-1.3" | "lal-1.3" => Self::FreeArt,
            _ if name.starts_with("gfdl") => Self::Gfdl,
            _ => Self::Other(term.trim().to_string()),
        }
    }
}

/// Spelled-out Creative Commons names as their short names, spaces as hyphens: `creative commons attribution
/// 3.0 unported` gives `cc-by-3.0-unported`, `cc-by-sa 4.0` gives `cc-by-sa-4.0`.
fn canonical_name(lower: &str) -> String {
    let mut name = lower.to_string();
    for (long, short) in [
        ("creative commons attribution-sharealike", "cc-by-sa"),
        ("creative commons attribution-share alike", "cc-by-sa"),
        ("creative commons attribution share-alike", "cc-by-sa"),
        ("creative commons attribution share alike", "cc-by-sa"),
        ("creative commons attribution", "cc-by"),
        ("creative commons zero", "creative-commons-zero"),
        ("public domain", "public-domain"),
    ] {
        name = name.replace(long, short);
    }
    name.split_whitespace().collect::<Vec<_>>().join("-")
}

/// The version after a CC licence's short name: `-3.0-unported` gives `3.0`, `-4` gives `4.0`.
fn cc_version(rest: &str) -> Option<String> {
    let version = rest.trim_start_matches(['-', 'v']).split('-').next()?;
    let number: f32 = version.parse().ok()?;
    Some(format!("{number:.1}"))
}

/// A GNU licence from what follows its family's prefix: `-2+`, `v3`, `-2.1`, `-3.0-or-later`, or nothing.
fn gnu(family: GnuFamily, rest: &str) -> Option<Licence> {
    let or_later = rest.ends_with('+') || rest.ends_with("-or-later");
    let version_text = rest
        .trim_start_matches(['-', 'v'])
        .trim_end_matches('+')
        .trim_end_matches("-or-later")
        .trim_end_matches("-only");
    let version = match version_text {
        "" => None,
        text => Some(text.split('.').next()?.parse().ok()?),
    };
    Some(Licence::Gnu {
        family,
        version,
        or_later,
    })
}

impl fmt::Display for Licence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = |v: &Option<String>| v.as_ref().map_or(String::new(), |v| format!("-{v}"));
        match self {
            Self::PublicDomain => f.write_str("public domain"),
            Self::Permissive(name) => f.write_str(name),
            Self::CcBy(v) => write!(f, "CC-BY{}", version(v)),
            Self::CcBySa(v) => write!(f, "CC-BY-SA{}", version(v)),
            Self::Gnu {
                family,
                version,
                or_later,
            } => {
                let prefix = match family {
                    GnuFamily::General => "GPL",
                    GnuFamily::Lesser => "LGPL",
                    GnuFamily::Affero => "AGPL",
                };
                let version = version.map_or(String::new(), |v| format!("-{v}"));
                write!(f, "{prefix}{version}{}", if *or_later { "+" } else { "" })
            }
            Self::Artistic1 => f.write_str("Artistic-1.0"),
            Self::Artistic2 => f.write_str("Artistic-2.0"),
            Self::FreeArt => f.write_str("the Free Art License"),
            Self::Gfdl => f.write_str("the GFDL"),
            Self::Other(name) => write!(f, "{name:?} (a licence this build cannot classify)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WeightsLicence::{Gpl3OrLater, MitOrApache};

    /// Every licence record of the fine-labelled build (`--with-gcompris --with-soundfont
    /// --with-labelled-sources`), as the builder writes them, and whether each licence allows it.
    const RECORDS: &[(&str, bool, bool)] = &[
        // record, allowed under GPL-3.0-or-later, allowed under MIT OR Apache-2.0
        ("GPL-2+", true, false),
        ("GPL-2", false, false),
        ("GPL", true, false),
        ("CC-BY-SA-3.0 (2010 Wildfire Games)", false, false),
        ("CC-BY-SA 4.0", true, false),
        ("free-art (Lionel Allorge; Yves Combe)", false, false),
        ("public domain", true, true),
        ("public-domain (Not copyrighted)", true, true),
        ("CC0 (2011 dio_333)", true, true),
        ("MIT (2016 Samuel Aaron <samaaron@gmail.com>)", true, true),
        ("CC-BY-3.0 (Dr. Richard Boulanger et al)", false, true),
        (
            "Artistic-1.0 (1997-2004 Hansjoerg Malthaner; 2004-2018 Simutrans Team)",
            false,
            false,
        ),
        (
            "GPL-2+ (2003 Brailcom, o.p.s. <kontakt@brailcom.org>)",
            true,
            false,
        ),
        (
            "Original \"claxon.wav\" by \"han1\". Edited by Janis Lukss. License: Creative Commons \
             Attribution 3.0 Unported.",
            false,
            true,
        ),
        (
            "Original \"elaine-growl.wav\" by Elaine Miller. Edited by \"Wuzzy\". License: Creative \
             Commons Zero 1.0.",
            true,
            true,
        ),
        (
            "Original \"helicopterRaw_16sec.wav\" by \"lorenzosu\". Edited by \"Wuzzy\". License: \
             Creative Commons Attribution-ShareAlike 3.0 Unported.",
            false,
            false,
        ),
        ("sound: GPL-3+; picture: GPLv3", true, false),
        ("sound: GPLv3; picture: CC0-1.0", true, false),
        (
            "sound: Creative Commons Sampling Plus 1.0 License.; picture: GPLv3",
            false,
            false,
        ),
        (
            "picture: public domain; sound: MIT (fluid-soundfont-gm: Acoustic Guitar (nylon))",
            true,
            true,
        ),
        (
            "picture: GPL-2+; sound: MIT (fluid-soundfont-gm: Trumpet)",
            true,
            false,
        ),
        // Other names the packages use.
        ("GPL-2+ or CDDL", true, false),
        ("CDDL", false, false),
        ("GPL-3+ with Font exception", true, false),
        ("LGPL-2.1", true, false),
        ("AGPL-3", false, false),
        ("CC-BY-4.0", true, true),
        ("CC-BY-3.0 and CC0-1.0", false, true),
        ("CC0-1.0 and CC-BY-4.0", true, true),
        ("CC-BY-NC-3.0 (x)", false, false),
        ("GFDL-NIV-1.2+", false, false),
        ("Apache2.0", true, true),
        ("Zlib", true, true),
        ("CC-BY-ND-4.0", false, false),
        ("Mitchell's licence", false, false),
        ("unknown: see usr/share/doc/x/copyright", false, false),
    ];

    #[test]
    fn each_recorded_licence_is_allowed_only_where_its_terms_permit() {
        for &(record, gpl, permissive) in RECORDS {
            assert_eq!(
                Gpl3OrLater.refusal(record).is_none(),
                gpl,
                "{record} under GPL-3.0-or-later: {:?}",
                Gpl3OrLater.refusal(record)
            );
            assert_eq!(
                MitOrApache.refusal(record).is_none(),
                permissive,
                "{record} under MIT OR Apache-2.0: {:?}",
                MitOrApache.refusal(record)
            );
        }
    }

    #[test]
    fn a_refusal_names_the_licence_and_the_weights_licence() {
        assert_eq!(
            Gpl3OrLater.refusal("CC-BY-SA-3.0 (2010 Wildfire Games)"),
            Some("CC-BY-SA-3.0 does not allow weights under GPL-3.0-or-later".into())
        );
        assert_eq!(
            Gpl3OrLater
                .refusal("sound: Creative Commons Sampling Plus 1.0 License.; picture: GPLv3")
                .unwrap(),
            "\"Creative Commons Sampling Plus 1.0 License\" (a licence this build cannot classify) \
             does not allow weights under GPL-3.0-or-later"
        );
        assert_eq!(
            MitOrApache.refusal("GPL-2+"),
            Some("GPL-2+ does not allow weights under MIT OR Apache-2.0".into())
        );
    }
}
