//! Files taken out of a `.tar.gz` by name, each written beside its final name and renamed when whole.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, bail};
use flate2::read::GzDecoder;

use super::catalog::FileName;
use s2v_models::checkpoint::write_whole;

/// Writes each of `members` (matched by file name, in whatever folder of the archive) into `dir`.
pub fn unpack_members(archive: &Path, members: &[FileName], dir: &Path) -> anyhow::Result<()> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    let mut wanted: Vec<&str> = members.iter().map(FileName::as_str).collect();
    let mut seen = Vec::new();
    let entries = tar
        .entries()
        .with_context(|| format!("cannot read {} as a .tar.gz", archive.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        seen.push(path.display().to_string());
        let Some(at) = wanted.iter().position(|w| *w == name) else {
            continue;
        };
        let dest = dir.join(wanted.remove(at));
        write_whole(&dest, |partial| {
            std::io::copy(&mut entry, &mut File::create(partial)?).map(drop)
        })
        .with_context(|| format!("cannot unpack {name}"))?;
        if wanted.is_empty() {
            return Ok(());
        }
    }
    let shown = seen.len().min(12);
    bail!(
        "{} holds no {} (it holds {}{})",
        archive.display(),
        wanted.join(", "),
        seen[..shown].join(", "),
        if seen.len() > shown { ", ..." } else { "" }
    )
}
