//! Files written whole: into a `.partial` file beside the real name, renamed into place once complete, so
//! that a crash or a full disk never leaves half a checkpoint where a reader looks.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use super::CheckpointError;

/// The file `path` is written to before it takes its name: `NAME.partial`, the whole name kept, so that
/// `a.json` and `a.safetensors` in one folder never share one.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes `path` through `write`, which is given the partial file to fill. On failure the partial file is
/// removed and the error names it.
pub fn write_whole<E: Display>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), CheckpointError> {
    let partial = partial_path(path);
    let failed = |at: &Path, message: String| CheckpointError::Write {
        path: at.display().to_string(),
        message,
    };
    if let Err(e) = write(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(&partial, e.to_string()));
    }
    std::fs::rename(&partial, path).map_err(|e| failed(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_under_its_name_only_when_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        write_whole(&path, |partial| {
            assert!(!path.exists(), "nothing under the real name while writing");
            std::fs::write(partial, b"whole")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert!(!partial_path(&path).exists());
    }

    #[test]
    fn a_failed_write_leaves_neither_file_and_names_the_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let error = write_whole(&path, |partial| {
            std::fs::write(partial, b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("a.safetensors.partial") && error.contains("disk full"),
            "{error}"
        );
        assert!(!path.exists() && !partial_path(&path).exists());
    }

    #[test]
    fn names_that_differ_only_in_extension_get_different_partial_files() {
        let dir = Path::new("/m");
        assert_ne!(
            partial_path(&dir.join("config.json")),
            partial_path(&dir.join("config.safetensors"))
        );
    }
}
