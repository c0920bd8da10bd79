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
    fn a_copyright_file_without_stanzas_is_not_machine_readable() {
        assert!(
            Copyright::parse("This package was debianized by someone.\n\nIt is GPL.\n").is_none()
        );
    }
}
