//! Each packaged file's licence and copyright holders, from its package's machine-readable `copyright` file
//! (DEP-5): the last `Files:` stanza that names the file decides, as DEP-5 says. The stanzas name files by
//! their place in the upstream source (`etc/samples/drum_cowbell.flac`), the builder knows them by their
//! installed place (`usr/share/sonic-pi/samples/drum_cowbell.flac`): a stanza names a file when its pattern,
//! or the pattern less its leading folders (down to the folder holding the file), ends the installed path.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Where a package unpacked under `root` keeps its `copyright` file.
pub fn copyright_file(root: &Path, package: &str) -> PathBuf {
    root.join("usr/share/doc").join(package).join("copyright")
}

/// A file's licence as its package states it, with whom to credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLicence {
    pub licence: String,
    pub copyright: String,
}

impl FileLicence {
    /// `CC-BY-3.0 (Dr. Richard Boulanger et al)`: the licence and the attribution it may ask for.
    pub fn describe(&self) -> String {
        if self.copyright.is_empty() {
            self.licence.clone()
        } else {
            format!("{} ({})", self.licence, self.copyright)
        }
    }
}

/// A parsed DEP-5 `copyright` file.
#[derive(Debug)]
pub struct Copyright {
    stanzas: Vec<(GlobSet, FileLicence)>,
    /// The stanza of `Files: *`, which covers what no narrower stanza names.
    whole_package: Option<FileLicence>,
}

impl Copyright {
    /// `None` when the file is not machine-readable (no `Files:` stanza).
    pub fn parse(text: &str) -> Option<Self> {
        let mut whole_package = None;
        let stanzas: Vec<_> = text
            .split("\n\n")
            .filter_map(|paragraph| {
                let fields = Fields::of(paragraph);
                let files = fields.get("Files")?;
                let licence = fields.get("License")?.lines().next()?.trim().to_string();
                let licence = with_later_versions(&licence, text);
                let copyright = fields
                    .get("Copyright")
                    .map(|c| {
                        c.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                let licence = FileLicence { licence, copyright };
                if files.split_whitespace().any(|pattern| pattern == "*") {
                    whole_package = Some(licence.clone());
                }
                Some((file_globs(&files)?, licence))
            })
            .collect();
        (!stanzas.is_empty()).then_some(Self {
            stanzas,
            whole_package,
        })
    }

    /// The licence and holders of the package as a whole (its `Files: *` stanza), where it has one.
    pub fn whole_package(&self) -> Option<&FileLicence> {
        self.whole_package.as_ref()
    }

    /// The licence of the file installed at `path` (inside archives: `archive/entry`).
    pub fn licence_of(&self, path: &str) -> Option<&FileLicence> {
        self.stanzas
            .iter()
            .rev()
            .find(|(globs, _)| globs.is_match(path))
            .map(|(_, licence)| licence)
    }
}

/// The fields of one stanza, continuation lines joined with newlines.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn of(paragraph: &str) -> Self {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in paragraph.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Self(fields)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

/// `GPL-2` as `GPL-2+` where the licence's text in the same `copyright` file grants "any later version".
/// DEP-5 marks that grant with `+`, but some packages write the grant without the mark (Tux Paint's stamps:
/// `License: GPL-2` over "either version 2 of the License, or (at your option) any later version"), and
/// whether the GPL's version 3 may apply decides which licences the data can be combined under.
pub fn with_later_versions(name: &str, copyright_text: &str) -> String {
    let lower = name.to_lowercase();
    let gnu = ["gpl", "lgpl", "agpl"].iter().any(|l| lower.starts_with(l));
    if !gnu || name.ends_with('+') {
        return name.to_string();
    }
    let granted = copyright_text.split("\n\n").any(|paragraph| {
        Fields::of(paragraph).get("License").is_some_and(|field| {
            let mut lines = field.lines();
            let body = lines.by_ref().skip(1).collect::<Vec<_>>().join(" ");
            let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
            field.lines().next().map(str::trim) == Some(name)
                && text.to_lowercase().contains("any later version")
        })
    });
    if granted {
        format!("{name}+")
    } else {
        name.to_string()
    }
}

/// Globs for a `Files:` field's patterns and their shorter tails; `*` crosses folders, as in DEP-5.
fn file_globs(files: &str) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in files.split_whitespace() {
        let parts: Vec<&str> = pattern.split('/').collect();
        let shortest_tail = parts.len().min(2);
        for start in 0..=parts.len() - shortest_tail {
            let tail = parts[start..].join("/");
            builder.add(GlobBuilder::new(&format!("**/{tail}")).build().ok()?);
        }
    }
    builder.build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONIC_PI: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
        Upstream-Name: sonic-pi\n\n\
        Files: *\nCopyright: 2016 Samuel Aaron\nLicense: MIT\n\n\
        Files: etc/samples/drum_cowbell.flac\n  etc/samples/misc_crow.flac\nCopyright: 2009 Neotone\n\
        Source: http://freesound.org/people/Neotone/sounds/75338/\nLicense: CC0\n\n\
        Files: stereo/bell.oga\nCopyright: Dr. Richard Boulanger et al\nLicense: CC-BY-3.0\n Text of the licence.\n";

    #[test]
    fn the_last_stanza_naming_an_installed_file_decides() {
        let copyright = Copyright::parse(SONIC_PI).unwrap();
        let cowbell = copyright
            .licence_of("usr/share/sonic-pi/samples/drum_cowbell.flac")
            .unwrap();
        assert_eq!(cowbell.describe(), "CC0 (2009 Neotone)");
        let crow = copyright
            .licence_of("usr/share/sonic-pi/samples/misc_crow.flac")
            .unwrap();
        assert_eq!(crow.licence, "CC0");
        let other = copyright
            .licence_of("usr/share/sonic-pi/samples/guit_e.flac")
            .unwrap();
        assert_eq!(other.licence, "MIT");
        let bell = copyright
            .licence_of("usr/share/sounds/freedesktop/stereo/bell.oga")
            .unwrap();
        assert_eq!(bell.describe(), "CC-BY-3.0 (Dr. Richard Boulanger et al)");
    }

    #[test]
    fn the_whole_package_is_its_star_stanza() {
        let copyright = Copyright::parse(SONIC_PI).unwrap();
        assert_eq!(
            copyright.whole_package().unwrap().describe(),
            "MIT (2016 Samuel Aaron)"
        );
        let narrow_only = "Files: stereo/bell.oga\nCopyright: x\nLicense: CC0\n";
        assert!(
            Copyright::parse(narrow_only)
                .unwrap()
                .whole_package()
                .is_none()
        );
    }

    #[test]
    fn a_file_in_another_folder_of_the_same_name_is_not_named() {
        let copyright = Copyright::parse(SONIC_PI).unwrap();
        // `stereo/bell.oga` names the bell in a `stereo` folder only.
        let elsewhere = copyright
            .licence_of("usr/share/sounds/mono/bell.oga")
            .unwrap();
        assert_eq!(elsewhere.licence, "MIT");
    }

    #[test]
    fn a_gnu_licence_whose_text_grants_later_versions_is_marked_so() {
        let tuxpaint = "Files: *\nCopyright: 2002-2022 Bill Kendrick\nLicense: GPL-2\n\n\
            License: GPL-2\n This package is free software; you can redistribute it under the terms of the \
            GNU General Public License as published by the Free Software Foundation; either version 2 of the \
            License, or\n (at your option) any later version.\n";
        let copyright = Copyright::parse(tuxpaint).unwrap();
        assert_eq!(copyright.whole_package().unwrap().licence, "GPL-2+");
        // Version 2 only: the text points at version 2 and grants nothing later.
        let only = "Files: *\nCopyright: x\nLicense: GPL-2\n\nLicense: GPL-2\n The complete text of the \
            GNU General Public License version 2 can be found in /usr/share/common-licenses/GPL-2.\n";
        assert_eq!(
            Copyright::parse(only)
                .unwrap()
                .whole_package()
                .unwrap()
                .licence,
            "GPL-2"
        );
        // Another licence's grant says nothing about this one, and other licences are left as named.
        let other =
            "Files: *\nCopyright: x\nLicense: GPL-2\n\nLicense: LGPL-2.1\n or any later version\n";
        assert_eq!(
            Copyright::parse(other)
                .unwrap()
                .whole_package()
                .unwrap()
                .licence,
            "GPL-2"
        );
        assert_eq!(
            with_later_versions("CC-BY-SA-3.0", tuxpaint),
            "CC-BY-SA-3.0"
        );
        assert_eq!(with_later_versions("GPL-3+", tuxpaint), "GPL-3+");
    }

    #[test]
    fn a_copyright_file_without_stanzas_is_not_machine_readable() {
        assert!(
            Copyright::parse("This package was debianized by someone.\n\nIt is GPL.\n").is_none()
        );
    }
}
