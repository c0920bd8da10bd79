//! Storage: content-addressed PNG files and one JSON record per generation, in a local data directory or,
//! for deployments, an S3-compatible bucket.
//!
//! Every local write goes to a temporary file that is synced and renamed into place, so a crash or restart never
//! leaves a half-written image or record; a record is written only after all of its images exist, so a share
//! link never points at a missing image. Leftover temporary files are removed when the store opens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use sha2::{Digest, Sha256};

pub use s2v_shared::wire::GenerationRecord;

const TMP_SUFFIX: &str = ".partial";

/// Where images and records live: a local directory (the default) or an S3-compatible bucket.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

impl Store {
    /// A store in a local directory.
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
            backend: Backend::Local(root.to_path_buf()),
        })
    }

    /// A store in an S3 bucket (under `prefix`), configured by the usual `AWS_*` environment variables
    /// (`AWS_ENDPOINT_URL` for S3-compatible services, `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).
    /// Each object is written whole by one PUT, so readers never see half an image or record.
    pub fn s3(bucket: &str, prefix: &str) -> anyhow::Result<Self> {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()?;
        Ok(Self::object(Arc::new(store), prefix))
    }

    /// A store in any object store.
    pub fn object(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            backend: Backend::Object {
                store,
                prefix: ObjectPath::from(prefix),
            },
        }
    }

    /// Stores a PNG under its SHA-256 and returns the hash (idempotent: equal images share one file).
    pub async fn put_image(&self, png: Vec<u8>) -> std::io::Result<String> {
        let hash = hex::encode(Sha256::digest(&png));
        let name = format!("{hash}.png");
        // Content-addressed: an image that exists is already right.
        self.put("images", &name, png, Existing::Keep).await?;
        Ok(hash)
    }

    /// An image's PNG, if `hash` names one (anything not shaped like a SHA-256 names none).
    pub async fn image(&self, hash: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_sha256(hash) {
            return Ok(None);
        }
        self.get("images", &format!("{hash}.png")).await
    }

    pub async fn put_generation(&self, record: &GenerationRecord) -> std::io::Result<()> {
        if !is_generation_id(&record.id) {
            return Err(std::io::Error::other("invalid generation id"));
        }
        let name = format!("{}.json", record.id);
        self.put(
            "generations",
            &name,
            serde_json::to_vec_pretty(record)?,
            Existing::Replace,
        )
        .await
    }

    pub async fn generation(&self, id: &str) -> std::io::Result<Option<GenerationRecord>> {
        if !is_generation_id(id) {
            return Ok(None);
        }
        match self.get("generations", &format!("{id}.json")).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes `dir/name` whole (callers have checked that `name` is a plain file name).
    async fn put(
        &self,
        dir: &str,
        name: &str,
        bytes: Vec<u8>,
        existing: Existing,
    ) -> std::io::Result<()> {
        match &self.backend {
            Backend::Local(root) => {
                let path = root.join(dir).join(name);
                tokio::task::spawn_blocking(move || {
                    if existing == Existing::Keep && path.exists() {
                        return Ok(());
                    }
                    write_atomically(&path, &bytes)
                })
                .await
                .map_err(std::io::Error::other)?
            }
            // One PUT of equal bytes costs what checking for them would.
            Backend::Object { store, prefix } => store
                .put(&prefix.clone().join(dir).join(name), bytes.into())
                .await
                .map(|_| ())
                .map_err(std::io::Error::other),
        }
    }

    async fn get(&self, dir: &str, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Local(root) => match tokio::fs::read(root.join(dir).join(name)).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Backend::Object { store, prefix } => {
                match store.get(&prefix.clone().join(dir).join(name)).await {
                    Ok(result) => Ok(Some(
                        result
                            .bytes()
                            .await
                            .map_err(std::io::Error::other)?
                            .to_vec(),
                    )),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
        }
    }
}

/// What a write does to an object that is already there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    Keep,
    Replace,
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
    use s2v_shared::wire::ModelInfo;

    fn record(image: String) -> GenerationRecord {
        GenerationRecord {
            id: new_generation_id(),
            created: 1,
            model: ModelInfo {
                id: "m".into(),
                version: "1".into(),
            },
            seed: 3,
            count: 1,
            truncation: None,
            steps: Some(20),
            guidance: Some(10.0),
            images: vec![image],
        }
    }

    async fn round_trip(store: &Store) {
        let a = store.put_image(b"png bytes".to_vec()).await.unwrap();
        assert_eq!(a, store.put_image(b"png bytes".to_vec()).await.unwrap());
        assert_eq!(
            store.image(&a).await.unwrap().as_deref(),
            Some(&b"png bytes"[..])
        );
        assert_eq!(store.image("../../etc/passwd").await.unwrap(), None);
        assert_eq!(store.image(&"0".repeat(64)).await.unwrap(), None);
        let record = record(a);
        store.put_generation(&record).await.unwrap();
        assert_eq!(store.generation(&record.id).await.unwrap(), Some(record));
        assert_eq!(store.generation("../x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn images_are_content_addressed_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&Store::open(dir.path()).unwrap()).await;
        round_trip(&Store::object(
            Arc::new(object_store::memory::InMemory::new()),
            "deployment",
        ))
        .await;
    }

    #[tokio::test]
    async fn records_survive_reopening_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let record = record(String::new());
        Store::open(dir.path())
            .unwrap()
            .put_generation(&record)
            .await
            .unwrap();
        assert_eq!(
            Store::open(dir.path())
                .unwrap()
                .generation(&record.id)
                .await
                .unwrap(),
            Some(record)
        );
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
