//! Licences an upstream states per file where Debian's `copyright` gives its package one: Widelands lists
//! each sound's author and licence in `data/sound/wl-sound-docu.csv`, and several that Debian files under
//! the game's GPL-2+ came from freesound.org under CC-BY 3.0, or from no one the list can name. The file's
//! own entry is the more specific statement, so it decides where it names the file.

use std::collections::HashMap;
use std::path::Path;

const WIDELANDS_PACKAGE: &str = "widelands-data";
const WIDELANDS_DATA: &str = "usr/share/games/widelands/data";
const WIDELANDS_SOUND_LIST: &str = "usr/share/games/widelands/data/sound/wl-sound-docu.csv";

/// Each listed file's licence with its credit, by installed path; empty for a package without such a list.
pub fn upstream_licences(root: &Path, package: &str) -> HashMap<String, String> {
    if package != WIDELANDS_PACKAGE {
        return HashMap::new();
    }
    std::fs::read(root.join(WIDELANDS_SOUND_LIST))
        .map(|bytes| widelands_sound_list(&bytes))
        .unwrap_or_default()
}

/// The rows of Widelands' sound list, after its preamble: `File Name, Format, Location, Usage, Author,
/// License, ...`, the location relative to `data/` (some rows write it with `data/` in front).
fn widelands_sound_list(bytes: &[u8]) -> HashMap<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = reader.records().filter_map(Result::ok);
    if !rows.any(|row| row.get(0) == Some("File Name")) {
        return HashMap::new();
    }
    rows.filter_map(|row| {
        let (name, location) = (row.get(0)?.trim(), row.get(2)?.trim());
        if name.is_empty() || location.is_empty() {
            return None;
        }
        let location = location.trim_start_matches("data/").trim_matches('/');
        let path = format!("{WIDELANDS_DATA}/{location}/{name}");
        let licence = describe(row.get(5).unwrap_or(""), row.get(4).unwrap_or(""));
        Some((path, licence))
    })
    .collect()
}

/// The list's short names as the licence policy reads them (`CC-3` is freesound.org's Attribution 3.0,
/// where those sounds came from), with the author as the credit; what it does not name stays as written
/// (or says that nothing is stated), which the policy cannot classify and so never takes for permission.
fn describe(licence: &str, author: &str) -> String {
    let licence = match licence.trim() {
        "CC-0" => "CC0-1.0".to_string(),
        "CC-3" => "CC-BY-3.0".to_string(),
        "PD" => "public-domain".to_string(),
        "" => "no licence stated in Widelands' sound list".to_string(),
        other => format!("{other} (as Widelands' sound list states it)"),
    };
    match author.trim() {
        "" | "UNKNOWN" => licence,
        author => format!("{licence} ({author})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "Widelands Sound Documentation,,,,,,\n\
        Some sounds are empty.,,,,,,\n\
        ,,,,,,\n\
        File Name,Format,Location,Usage,Author,License,reworked\n\
        ,,,,,,\n\
        sawing_00.ogg,22050,sound/atlanteans/saw,sawmill,dobroide,CC-3,yes\n\
        benchsaw_00.ogg,22050,sound/atlanteans/saw,sawmill,mauxuam,CC-0,yes\n\
        moose_00.ogg,22050,data/sound/animals,,fws.gov,PD,\n\
        wolf_00.ogg,22050,data/sound/animals,,UNKNOWN,,\n\
        boar.ogg,22050,data/sound/animals,,UNKNOWN,personal,\n";

    #[test]
    fn the_sound_list_gives_each_file_its_licence_and_author() {
        let licences = widelands_sound_list(LIST.as_bytes());
        let of = |path: &str| licences[&format!("{WIDELANDS_DATA}/{path}")].as_str();
        assert_eq!(
            of("sound/atlanteans/saw/sawing_00.ogg"),
            "CC-BY-3.0 (dobroide)"
        );
        assert_eq!(
            of("sound/atlanteans/saw/benchsaw_00.ogg"),
            "CC0-1.0 (mauxuam)"
        );
        assert_eq!(of("sound/animals/moose_00.ogg"), "public-domain (fws.gov)");
        assert_eq!(
            of("sound/animals/wolf_00.ogg"),
            "no licence stated in Widelands' sound list"
        );
        assert_eq!(
            of("sound/animals/boar.ogg"),
            "personal (as Widelands' sound list states it)"
        );
        assert_eq!(licences.len(), 5);
    }

    #[test]
    fn a_list_without_its_header_row_gives_nothing() {
        assert!(widelands_sound_list(b"sawing_00.ogg,22050,sound,,x,CC-3\n").is_empty());
        assert!(widelands_sound_list(b"").is_empty());
    }
}
