//! Reads Qt's compiled resource archives (`.rcc`, as `rcc --binary` writes them), in which GCompris ships its
//! activities' pictures and sounds. No maintained crate reads them; the format is small:
//!
//! - a header: `qres`, then big-endian u32s: version (1 to 3), offsets of the tree, the data and the names, and
//!   (version 3) feature flags;
//! - the tree: one entry per file or folder, 14 bytes (version 1) or 22 (a u64 modification time added): the
//!   name's offset (u32), flags (u16: 1 zlib-compressed, 2 folder, 4 zstd-compressed), then for a folder the
//!   child count and the index of its first child (u32 each), children being contiguous; for a file the
//!   territory and language (u16 each) and the data's offset (u32). Entry 0 is the root folder;
//! - a name: u16 length in UTF-16 units, u32 hash, the UTF-16BE text;
//! - data: u32 length, the bytes; zlib-compressed data starts with its uncompressed length (u32) as
//!   `qCompress` writes it.
//!
//! Every offset is checked, so a damaged archive gives an error, never a panic.

use std::io::Read;

use anyhow::{Context, Result, bail, ensure};

const FOLDER: u16 = 2;
const ZLIB: u16 = 1;
const ZSTD: u16 = 4;
/// A folder deeper than this is taken for a loop in a damaged tree.
const MAX_DEPTH: usize = 64;

/// One file of an archive: its path inside it (`a/b/c.ogg`) and its bytes, decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub path: String,
    pub data: Vec<u8>,
}

struct Archive<'a> {
    bytes: &'a [u8],
    entry_size: usize,
    tree: usize,
    data: usize,
    names: usize,
    /// Entries left to visit: a sound archive's walk visits each entry once, and no more entries fit in it than
    /// its size allows, so folders that share children (a damaged or crafted tree) cannot blow the walk up.
    visits_left: std::cell::Cell<usize>,
}

impl Archive<'_> {
    fn slice(&self, start: usize, len: usize) -> Result<&[u8]> {
        start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .with_context(|| format!("offset {start} (+{len}) is past the archive's end"))
    }

    fn u16_at(&self, at: usize) -> Result<u16> {
        Ok(u16::from_be_bytes(self.slice(at, 2)?.try_into()?))
    }

    fn u32_at(&self, at: usize) -> Result<usize> {
        Ok(u32::from_be_bytes(self.slice(at, 4)?.try_into()?) as usize)
    }

    fn name(&self, offset: usize) -> Result<String> {
        let at = self.names.saturating_add(offset);
        let units = self.u16_at(at)? as usize;
        let text = self.slice(at + 6, units * 2)?;
        let utf16: Vec<u16> = text
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&utf16).context("a name is not valid UTF-16")
    }

    fn file_data(&self, offset: usize, flags: u16) -> Result<Vec<u8>> {
        let at = self.data.saturating_add(offset);
        let len = self.u32_at(at)?;
        let stored = self.slice(at + 4, len)?;
        if flags & ZSTD != 0 {
            bail!("zstd-compressed resources are not supported");
        }
        if flags & ZLIB == 0 {
            return Ok(stored.to_vec());
        }
        ensure!(stored.len() >= 4, "a compressed resource is too short");
        let expected = u32::from_be_bytes(stored[..4].try_into()?) as usize;
        let mut out = Vec::with_capacity(expected.min(1 << 28));
        flate2::read::ZlibDecoder::new(&stored[4..])
            .take(expected as u64 + 1)
            .read_to_end(&mut out)
            .context("a compressed resource does not inflate")?;
        ensure!(
            out.len() == expected,
            "a compressed resource inflates to {} bytes, its header says {expected}",
            out.len()
        );
        Ok(out)
    }

    fn walk(
        &self,
        index: usize,
        prefix: &str,
        depth: usize,
        out: &mut Vec<Resource>,
    ) -> Result<()> {
        ensure!(
            depth <= MAX_DEPTH,
            "the resource tree is deeper than {MAX_DEPTH}"
        );
        let left = self.visits_left.get();
        ensure!(
            left > 0,
            "the resource tree has more entries than the archive can hold"
        );
        self.visits_left.set(left - 1);
        let at = index
            .checked_mul(self.entry_size)
            .and_then(|o| o.checked_add(self.tree))
            .context("a tree index overflows")?;
        let flags = self.u16_at(at + 4)?;
        let path = if index == 0 {
            String::new()
        } else {
            let name = self.name(self.u32_at(at)?)?;
            ensure!(
                !name.is_empty() && name != "." && name != ".." && !name.contains('/'),
                "a resource has the unusable name {name:?}"
            );
            format!("{prefix}{name}")
        };
        if flags & FOLDER != 0 {
            let count = self.u32_at(at + 6)?;
            let first = self.u32_at(at + 10)?;
            ensure!(
                first > index || count == 0,
                "a folder's children come before it (a loop in the tree)"
            );
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            for child in 0..count {
                self.walk(first + child, &prefix, depth + 1, out)?;
            }
        } else {
            let data = self
                .file_data(self.u32_at(at + 10)?, flags)
                .with_context(|| format!("reading {path}"))?;
            out.push(Resource { path, data });
        }
        Ok(())
    }
}

/// Every file in an archive, in the archive's order.
pub fn read_resources(bytes: &[u8]) -> Result<Vec<Resource>> {
    ensure!(
        bytes.starts_with(b"qres"),
        "not a Qt resource archive (no `qres` header)"
    );
    let header = Archive {
        bytes,
        entry_size: 0,
        tree: 0,
        data: 0,
        names: 0,
        visits_left: 0.into(),
    };
    let version = header.u32_at(4)?;
    ensure!(
        (1..=3).contains(&version),
        "Qt resource archive version {version} is not supported (1 to 3 are)"
    );
    let entry_size = if version >= 2 { 22 } else { 14 };
    let archive = Archive {
        bytes,
        entry_size,
        tree: header.u32_at(8)?,
        data: header.u32_at(12)?,
        names: header.u32_at(16)?,
        visits_left: (bytes.len() / entry_size + 1).into(),
    };
    let mut out = Vec::new();
    archive.walk(0, "", 0, &mut out)?;
    Ok(out)
}

/// Writes an archive in the format `read_resources` reads (version 3; the files compressed with zlib where
/// `compress` is set): for tests, here and in the data builder's.
pub fn write_resources(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
    use std::io::Write;

    #[derive(Default)]
    struct Folder {
        folders: std::collections::BTreeMap<String, Folder>,
        files: Vec<(String, usize)>,
    }
    let mut root = Folder::default();
    for (index, (path, _, _)) in files.iter().enumerate() {
        let mut parts: Vec<&str> = path.split('/').collect();
        let file = parts.pop().expect("split gives one part at least");
        let mut folder = &mut root;
        for part in parts {
            folder = folder.folders.entry(part.to_string()).or_default();
        }
        folder.files.push((file.to_string(), index));
    }

    let mut names = Vec::new();
    let mut name = |text: &str| {
        let offset = names.len() as u32;
        let units: Vec<u16> = text.encode_utf16().collect();
        names.extend((units.len() as u16).to_be_bytes());
        names.extend(0u32.to_be_bytes());
        for unit in units {
            names.extend(unit.to_be_bytes());
        }
        offset
    };
    let mut data = Vec::new();
    let mut store = |bytes: &[u8], compress: bool| {
        let offset = data.len() as u32;
        let stored = if compress {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).expect("writing to memory");
            let mut stored = (bytes.len() as u32).to_be_bytes().to_vec();
            stored.extend(encoder.finish().expect("writing to memory"));
            stored
        } else {
            bytes.to_vec()
        };
        data.extend((stored.len() as u32).to_be_bytes());
        data.extend(stored);
        offset
    };

    // Entries breadth-first, so that each folder's children are contiguous.
    let mut tree: Vec<[u8; 22]> = vec![[0; 22]];
    let mut queue = std::collections::VecDeque::from([(0usize, &root)]);
    while let Some((slot, folder)) = queue.pop_front() {
        let first = tree.len();
        let count = folder.folders.len() + folder.files.len();
        tree[slot][4..6].copy_from_slice(&FOLDER.to_be_bytes());
        tree[slot][6..10].copy_from_slice(&(count as u32).to_be_bytes());
        tree[slot][10..14].copy_from_slice(&(first as u32).to_be_bytes());
        for (folder_name, child) in &folder.folders {
            let mut entry = [0; 22];
            entry[..4].copy_from_slice(&name(folder_name).to_be_bytes());
            queue.push_back((tree.len(), child));
            tree.push(entry);
        }
        for (file_name, index) in &folder.files {
            let (_, bytes, compress) = files[*index];
            let mut entry = [0; 22];
            entry[..4].copy_from_slice(&name(file_name).to_be_bytes());
            if compress {
                entry[4..6].copy_from_slice(&ZLIB.to_be_bytes());
            }
            entry[10..14].copy_from_slice(&store(bytes, compress).to_be_bytes());
            tree.push(entry);
        }
    }

    let header_size = 24;
    let tree_bytes: Vec<u8> = tree.concat();
    let tree_offset = header_size;
    let data_offset = tree_offset + tree_bytes.len();
    let names_offset = data_offset + data.len();
    let mut out = b"qres".to_vec();
    for value in [3, tree_offset, data_offset, names_offset, 1] {
        out.extend((value as u32).to_be_bytes());
    }
    out.extend(tree_bytes);
    out.extend(data);
    out.extend(names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        write_resources(&[
            (
                "gcompris/activities/instruments/resource/violin.ogg",
                b"OggS violin",
                true,
            ),
            (
                "gcompris/activities/instruments/resource/violin.svg",
                b"<svg/>",
                false,
            ),
            (
                "gcompris/activities/instruments/Instruments.qml",
                b"Item {}",
                true,
            ),
            ("top.txt", b"", false),
        ])
    }

    #[test]
    fn files_come_back_with_their_paths_and_bytes() {
        let mut got = read_resources(&sample()).unwrap();
        got.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<(&str, &[u8])> = got
            .iter()
            .map(|r| (r.path.as_str(), r.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "gcompris/activities/instruments/Instruments.qml",
                    &b"Item {}"[..]
                ),
                (
                    "gcompris/activities/instruments/resource/violin.ogg",
                    b"OggS violin"
                ),
                (
                    "gcompris/activities/instruments/resource/violin.svg",
                    b"<svg/>"
                ),
                ("top.txt", b""),
            ]
        );
    }

    #[test]
    fn damaged_archives_give_errors_not_panics() {
        let good = sample();
        assert!(read_resources(b"RIFF....").is_err());
        let mut version = good.clone();
        version[7] = 9;
        assert!(read_resources(&version).is_err());
        // Every truncation, and every single byte set to 0xFF, either reads or fails cleanly.
        for len in 0..good.len() {
            let _ = read_resources(&good[..len]);
        }
        for i in 4..good.len() {
            let mut damaged = good.clone();
            damaged[i] = 0xFF;
            let _ = read_resources(&damaged);
        }
    }

    #[test]
    fn a_loop_in_the_tree_is_refused() {
        let mut looped = sample();
        // Point the root's first child back at the root itself.
        let tree = u32::from_be_bytes(looped[8..12].try_into().unwrap()) as usize;
        looped[tree + 10..tree + 14].copy_from_slice(&0u32.to_be_bytes());
        assert!(read_resources(&looped).is_err());
    }
}
