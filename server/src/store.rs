//! Local storage: content-addressed PNG files and one JSON record per generation, in a data directory.
//!
//! Every write goes to a temporary file that is synced and renamed into place, so a crash or restart never
//! leaves a half-written image or record; a record is written only after all of its images exist, so a share
//! link never points at a missing image. Leftover temporary files are removed when the store opens.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ModelInfo;

const TMP_SUFFIX: &str = ".partial";

/// A finished generation, as its share link shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: ModelInfo,
    pub seed: u64,
    pub count: usize,
    pub truncation: Option<f32>,
    /// The SHA-256 of each image's PNG, in order.
    pub images: Vec<String>,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for dir in ["images", "generations"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)?;
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Stores a PNG under its SHA-256 and returns the hash (idempotent: equal images share one file).
    pub fn put_image(&self, png: &[u8]) -> std::io::Result<String> {
        let hash = hex::encode(Sha256::digest(png));
        let path = self
            .image_path(&hash)
            .expect("a hex digest is a valid name");
        if !path.exists() {
            write_atomically(&path, png)?;
        }
        Ok(hash)
    }

    /// The file of an image, if `hash` has the form of a SHA-256 (never a path outside the store).
    pub fn image_path(&self, hash: &str) -> Option<PathBuf> {
        is_sha256(hash).then(|| self.root.join("images").join(format!("{hash}.png")))
    }

    pub fn put_generation(&self, record: &GenerationRecord) -> std::io::Result<()> {
        let path = self
            .generation_path(&record.id)
            .ok_or_else(|| std::io::Error::other("invalid generation id"))?;
        write_atomically(&path, &serde_json::to_vec_pretty(record)?)
    }

    pub fn generation(&self, id: &str) -> std::io::Result<Option<GenerationRecord>> {
        let Some(path) = self.generation_path(id) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn generation_path(&self, id: &str) -> Option<PathBuf> {
        is_generation_id(id).then(|| self.root.join("generations").join(format!("{id}.json")))
    }
}

/// A new random generation id: 128 bits, hex.
pub fn new_generation_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_generation_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        "{}.{}{TMP_SUFFIX}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_content_addressed_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.put_image(b"png bytes").unwrap();
        assert_eq!(a, store.put_image(b"png bytes").unwrap());
        assert_eq!(
            std::fs::read(store.image_path(&a).unwrap()).unwrap(),
            b"png bytes"
        );
        assert!(store.image_path("../../etc/passwd").is_none());

        let record = GenerationRecord {
            id: new_generation_id(),
            created: 1,
            model: ModelInfo {
                id: "m".into(),
                version: "1".into(),
            },
            seed: 3,
            count: 1,
            truncation: None,
            images: vec![a],
        };
        store.put_generation(&record).unwrap();
        assert_eq!(
            Store::open(dir.path())
                .unwrap()
                .generation(&record.id)
                .unwrap(),
            Some(record)
        );
        assert_eq!(store.generation("../x").unwrap(), None);
    }

    #[test]
    fn leftover_partial_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let partial = dir
            .path()
            .join("images")
            .join(format!("abc.png.1234{TMP_SUFFIX}"));
        std::fs::write(&partial, b"half").unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!partial.exists());
    }
}
