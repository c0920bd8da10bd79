//! The files a label table names, read from unpacked packages: plain files, and the entries of zip archives
//! (0 A.D.), OpenSFX sound catalogues (OpenTTD) and Qt resource archives (GCompris), each with its label and
//! its licence.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::copyright::Copyright;
use super::labels::{ARCHIVE_ENTRY, LabelTable, SearchRoot};
use super::qt_resources::read_resources;
use super::upstream_licences::upstream_licences;

/// What a file holds, for the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Sound,
    Picture,
}

/// One labelled file of a package.
#[derive(Debug, Clone)]
pub struct LabelledFile {
    pub package: String,
    /// Its place in the unpacked tree; `archive!entry` inside an archive.
    pub path: String,
    pub label: String,
    pub media: Media,
    /// The extension its decoder is chosen by.
    pub format: String,
    pub licence: String,
    pub bytes: Vec<u8>,
}

impl LabelledFile {
    pub fn source(&self) -> String {
        format!("{}:{}", self.package, self.path)
    }

    /// The file's name without folder or extension.
    pub fn stem(&self) -> &str {
        let name = self
            .path
            .rsplit(['/', ARCHIVE_ENTRY])
            .next()
            .unwrap_or(&self.path);
        name.split_once('.').map_or(name, |(stem, _)| stem)
    }
}

const SOUND_FORMATS: [&str; 5] = ["ogg", "oga", "wav", "flac", "mp3"];
const PICTURE_FORMATS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "svg", "dds"];

/// A candidate file before its bytes are read: where it is and how to tell what it is.
struct Found {
    path: String,
    label: String,
    media: Media,
    format: String,
}

/// What a package gave: its labelled files, and the places the table names that its tree lacks.
#[derive(Debug, Default)]
pub struct PackageFiles {
    pub files: Vec<LabelledFile>,
    pub missing: Vec<String>,
}

/// Reads every file of `package` under `root` that `table` gives a label. Files that are neither sounds nor
/// pictures are left out; folders and archives the tree lacks (a package not unpacked there) are listed.
pub fn labelled_files(root: &Path, package: &str, table: &LabelTable) -> Result<PackageFiles> {
    let licences = PackageLicences::read(root, package);
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for search_root in table.search_roots(package) {
        let (SearchRoot::Folder(place) | SearchRoot::Archive(place)) = &search_root;
        if !root.join(place).exists() {
            missing.push(format!("{package}:{place}"));
            continue;
        }
        let found = match &search_root {
            SearchRoot::Folder(folder) => read_folder(root, package, folder, table)?,
            SearchRoot::Archive(archive) => read_archive(root, package, archive, table)?,
        };
        for (file, bytes, own_licence) in found {
            if seen.insert(file.path.clone()) {
                let licence = own_licence.unwrap_or_else(|| licences.of(&file.path));
                files.push(LabelledFile {
                    package: package.to_string(),
                    path: file.path,
                    label: file.label,
                    media: file.media,
                    format: file.format,
                    licence,
                    bytes,
                });
            }
        }
    }
    Ok(PackageFiles { files, missing })
}

/// A file read, with the licence its container states for it, where it states one.
type FoundBytes = (Found, Vec<u8>, Option<String>);

fn classify(package: &str, path: &str, table: &LabelTable) -> Option<Found> {
    let label = table.label_of(&format!("{package}:{path}"))?.to_string();
    let format = path.rsplit_once('.')?.1.to_lowercase();
    let media = if SOUND_FORMATS.contains(&format.as_str()) {
        Media::Sound
    } else if PICTURE_FORMATS.contains(&format.as_str()) {
        Media::Picture
    } else {
        return None;
    };
    Some(Found {
        path: path.to_string(),
        label,
        media,
        format,
    })
}

fn read_folder(
    root: &Path,
    package: &str,
    folder: &str,
    table: &LabelTable,
) -> Result<Vec<FoundBytes>> {
    let start = root.join(folder);
    if !start.is_dir() {
        bail!(
            "{} is not a folder: is {package} unpacked under {}?",
            start.display(),
            root.display()
        );
    }
    let mut read = Vec::new();
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            if let Some(found) = classify(package, &relative, table) {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                read.push((found, bytes, None));
            }
        }
    }
    read.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(read)
}

fn read_archive(
    root: &Path,
    package: &str,
    archive: &str,
    table: &LabelTable,
) -> Result<Vec<FoundBytes>> {
    let path = root.join(archive);
    let context = || {
        format!(
            "reading {}: is {package} unpacked under {}?",
            path.display(),
            root.display()
        )
    };
    let entry_path = |entry: &str| format!("{archive}{ARCHIVE_ENTRY}{entry}");
    if archive.ends_with(".zip") {
        let file = std::fs::File::open(&path).with_context(context)?;
        let mut zip = zip::ZipArchive::new(file).with_context(context)?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let mut read = Vec::new();
        for name in names {
            if let Some(found) = classify(package, &entry_path(&name), table) {
                let mut bytes = Vec::new();
                zip.by_name(&name)?
                    .read_to_end(&mut bytes)
                    .with_context(context)?;
                read.push((found, bytes, None));
            }
        }
        read.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        return Ok(read);
    }
    let bytes = std::fs::read(&path).with_context(context)?;
    if archive.ends_with(".cat") {
        let sounds = read_sound_catalogue(&bytes).with_context(context)?;
        return Ok(sounds
            .into_iter()
            .filter_map(|sound| {
                let path = entry_path(&sound.title);
                let label = table.label_of(&format!("{package}:{path}"))?.to_string();
                let found = Found {
                    path,
                    label,
                    media: Media::Sound,
                    format: "wav".into(),
                };
                Some((found, sound.wav.to_vec(), Some(sound.credit)))
            })
            .collect());
    }
    if archive.ends_with(".rcc") {
        let resources = read_resources(&bytes).with_context(context)?;
        let licences = super::build::resource_licences(&resources);
        return Ok(resources
            .iter()
            .filter_map(|resource| {
                let found = classify(package, &entry_path(&resource.path), table)?;
                Some((
                    found,
                    resource.data.clone(),
                    licences.get(&resource.path).cloned(),
                ))
            })
            .collect());
    }
    bail!("{archive}: zip, .cat and .rcc archives are read")
}

/// One sound of an OpenSFX catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct CatalogueSound<'a> {
    /// The quoted name the catalogue gives it: `Steam train station departure`.
    pub title: String,
    /// The rest of its description: who made it and under which licence.
    pub credit: String,
    pub wav: &'a [u8],
}

/// OpenTTD's sound catalogue: a table of (offset with the top bit set, size) pairs, the first offset also
/// giving the table's length; at each offset a length-prefixed description (`"Title". By ... License: ...`)
/// and then a RIFF WAV file.
pub fn read_sound_catalogue(bytes: &[u8]) -> Result<Vec<CatalogueSound<'_>>> {
    let word = |at: usize| -> Result<usize> {
        let four = bytes
            .get(at..at + 4)
            .context("a catalogue shorter than its table")?;
        Ok(u32::from_le_bytes([four[0], four[1], four[2], four[3]]) as usize)
    };
    const OFFSET_FLAG: usize = 0x8000_0000;
    let table_len = word(0)? & !OFFSET_FLAG;
    if table_len == 0 || !table_len.is_multiple_of(8) || table_len > bytes.len() {
        bail!("not an OpenSFX sound catalogue");
    }
    (0..table_len / 8)
        .map(|i| {
            let offset = word(i * 8)? & !OFFSET_FLAG;
            let size = word(i * 8 + 4)?;
            let name_len = usize::from(
                *bytes
                    .get(offset)
                    .context("an entry past the catalogue's end")?,
            );
            let description = bytes
                .get(offset + 1..offset + 1 + name_len)
                .context("an entry's name past the catalogue's end")?;
            let description = String::from_utf8_lossy(description)
                .trim_end_matches('\0')
                .to_string();
            let wav_start = offset + 1 + name_len;
            let wav_end = (wav_start + size).min(bytes.len());
            let (title, credit) = split_description(&description);
            Ok(CatalogueSound {
                title,
                credit,
                wav: &bytes[wav_start..wav_end.max(wav_start)],
            })
        })
        .collect()
}

/// `"Cow". Original "Moan.wav" by X. License: CC-BY 3.0.` as the title and the credit after it.
fn split_description(description: &str) -> (String, String) {
    let quoted = description
        .strip_prefix('"')
        .and_then(|rest| rest.split_once('"'));
    match quoted {
        Some((title, rest)) => (
            title.to_string(),
            rest.trim_start_matches(['.', ' ']).trim().to_string(),
        ),
        None => (description.to_string(), String::new()),
    }
}

/// A package's licences: per file from its upstream's own list where it has one, else from its
/// machine-readable `copyright`, else the package's one licence.
struct PackageLicences {
    package_wide: String,
    per_file: Option<Copyright>,
    upstream: HashMap<String, String>,
}

impl PackageLicences {
    fn read(root: &Path, package: &str) -> Self {
        let path = super::copyright::copyright_file(root, package);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Self {
            package_wide: super::build::package_licence(root, package),
            per_file: Copyright::parse(&text),
            upstream: upstream_licences(root, package),
        }
    }

    fn of(&self, path: &str) -> String {
        let installed = path.replace(ARCHIVE_ENTRY, "/");
        if let Some(licence) = self.upstream.get(&installed) {
            return licence.clone();
        }
        self.per_file
            .as_ref()
            .and_then(|copyright| copyright.licence_of(&installed))
            .map_or_else(|| self.package_wide.clone(), |licence| licence.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalogue of `(description, wav bytes)` entries laid out as OpenSFX's.
    fn catalogue(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let table_len = entries.len() * 8;
        let mut body = Vec::new();
        let mut table = Vec::new();
        for (description, wav) in entries {
            let offset = table_len + body.len();
            table.extend(((offset as u32) | 0x8000_0000).to_le_bytes());
            table.extend((wav.len() as u32).to_le_bytes());
            let mut name = description.as_bytes().to_vec();
            name.push(0);
            body.push(name.len() as u8);
            body.extend(name);
            body.extend(*wav);
        }
        table.extend(body);
        table
    }

    #[test]
    fn a_catalogue_gives_each_sound_its_title_credit_and_wav() {
        let bytes = catalogue(&[
            (
                "\"Cow\". Original \"moo.wav\" by X. License: Creative Commons Zero 1.0.",
                b"RIFFcow",
            ),
            (
                "\"Diesel/electric train\". By Y. License: Creative Commons Attribution 3.0.",
                b"RIFFtrain!",
            ),
        ]);
        let sounds = read_sound_catalogue(&bytes).unwrap();
        assert_eq!(sounds.len(), 2);
        assert_eq!(sounds[0].title, "Cow");
        assert_eq!(
            sounds[0].credit,
            "Original \"moo.wav\" by X. License: Creative Commons Zero 1.0."
        );
        assert_eq!(sounds[0].wav, b"RIFFcow");
        assert_eq!(sounds[1].title, "Diesel/electric train");
        assert_eq!(sounds[1].wav, b"RIFFtrain!");
    }

    #[test]
    fn a_truncated_catalogue_is_an_error_not_a_panic() {
        let bytes = catalogue(&[("\"Cow\". License: CC0.", b"RIFFcow")]);
        assert!(read_sound_catalogue(&bytes[..6]).is_err());
        assert!(read_sound_catalogue(&bytes[..10]).is_err());
        assert!(read_sound_catalogue(b"").is_err());
        assert!(read_sound_catalogue(&[0xff; 16]).is_err());
    }

    #[test]
    fn an_upstream_list_of_licences_decides_over_the_packages_blanket_one() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "usr/share/doc/widelands-data/copyright",
            "Files: *\nCopyright: Widelands Development Team\nLicense: GPL-2+\n",
        );
        write(
            "usr/share/games/widelands/data/sound/wl-sound-docu.csv",
            "File Name,Format,Location,Usage,Author,License\n\
             sawing_00.ogg,22050,sound/atlanteans/saw,,dobroide,CC-3\n",
        );
        let licences = PackageLicences::read(root.path(), "widelands-data");
        let data = "usr/share/games/widelands/data/sound";
        assert_eq!(
            licences.of(&format!("{data}/atlanteans/saw/sawing_00.ogg")),
            "CC-BY-3.0 (dobroide)"
        );
        // A file the list does not name keeps Debian's statement.
        assert_eq!(
            licences.of(&format!("{data}/animals/frog.ogg")),
            "GPL-2+ (Widelands Development Team)"
        );
        // Other packages have no such list.
        let other = PackageLicences::read(root.path(), "wesnoth-1.16-data");
        assert!(other.upstream.is_empty());
    }
}
