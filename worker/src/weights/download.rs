//! One file over HTTP(S): resumed from what an earlier try left, hashed as it arrives, and moved to its name
//! only once whole and checked, so a file at its final name is always a complete one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use sha2::Digest;

/// A download streams into its `partial_path` and takes its name only when whole and checked.
pub use s2v_models::checkpoint::partial_path;

use super::catalog::Sha256;

/// How long a connection may stay silent (connecting, or between two reads of the body).
const SILENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot reach {url}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error(
        "{url} answered with a web page, not the file (a download quota, a sign-in or a moved file; open the address in a browser to see which)"
    )]
    WebPage { url: String },
    #[error(
        "the connection was cut after {received} of {} bytes of {file}: they are kept in {partial}; run the command again to resume",
        total.map_or("?".to_string(), |t| t.to_string())
    )]
    Cut {
        file: PathBuf,
        partial: PathBuf,
        received: u64,
        total: Option<u64>,
        source: Option<std::io::Error>,
    },
    #[error(
        "the disk is full: {file} stopped after {written} bytes{}; the partial file was removed",
        total.map_or(String::new(), |t| format!(" of {t}"))
    )]
    DiskFull {
        file: PathBuf,
        written: u64,
        total: Option<u64>,
    },
    #[error(
        "{file} has SHA-256 {actual}, but the catalog pins {expected}: it was removed (the file changed where it is published, or the download was corrupted)"
    )]
    Mismatch {
        file: PathBuf,
        expected: Sha256,
        actual: Sha256,
    },
    #[error(
        "{file} is already there but has SHA-256 {actual}, not the {expected} the catalog pins: remove it to download it again"
    )]
    ExistingMismatch {
        file: PathBuf,
        expected: Sha256,
        actual: Sha256,
    },
    #[error(
        "the catalog pins no SHA-256 for {file}; the download's is {actual}. It is kept in {partial}: check it, then run again with --trust-unpinned (or record the digest in the catalog)"
    )]
    Unpinned {
        file: PathBuf,
        partial: PathBuf,
        actual: Sha256,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a download left at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downloaded {
    /// Fetched now (in part or whole); its digest.
    Fetched(Sha256),
    /// Already there from an earlier run (and matching its pin, where there is one).
    AlreadyThere,
}

pub struct Downloader {
    client: Client,
    /// Keep files whose digest the catalog does not pin.
    trust_unpinned: bool,
}

impl Downloader {
    pub fn new(trust_unpinned: bool) -> anyhow::Result<Self> {
        let client = Client::builder()
            .connect_timeout(SILENCE)
            .timeout(SILENCE)
            .user_agent(concat!("s2v/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            trust_unpinned,
        })
    }

    /// Fetches `url` to `dest`, resuming `dest`'s partial file if an earlier run left one.
    pub fn fetch(
        &self,
        url: &str,
        dest: &Path,
        pin: Option<Sha256>,
    ) -> Result<Downloaded, DownloadError> {
        if dest.exists() {
            return check_existing(dest, pin).map(|()| Downloaded::AlreadyThere);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| io(parent, source))?;
        }
        let partial = partial_path(dest);
        let digest = self.fetch_partial(url, dest, &partial)?;
        match pin {
            Some(expected) if expected != digest => {
                let _ = std::fs::remove_file(&partial);
                return Err(DownloadError::Mismatch {
                    file: dest.to_path_buf(),
                    expected,
                    actual: digest,
                });
            }
            None if !self.trust_unpinned => {
                return Err(DownloadError::Unpinned {
                    file: dest.to_path_buf(),
                    partial,
                    actual: digest,
                });
            }
            _ => {}
        }
        std::fs::rename(&partial, dest).map_err(|source| io(dest, source))?;
        Ok(Downloaded::Fetched(digest))
    }

    /// Brings the partial file to the whole file and returns its digest.
    fn fetch_partial(
        &self,
        url: &str,
        dest: &Path,
        partial: &Path,
    ) -> Result<Sha256, DownloadError> {
        let have = std::fs::metadata(partial).map_or(0, |m| m.len());
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = request.send().map_err(|source| DownloadError::Request {
            url: url.to_string(),
            source,
        })?;
        let start = match response.status() {
            StatusCode::PARTIAL_CONTENT if range_start(&response) == Some(have) => have,
            // Another range than the one asked for: start again from the first byte.
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                drop(response);
                std::fs::remove_file(partial).map_err(|source| io(partial, source))?;
                return self.fetch_partial(url, dest, partial);
            }
            // Asked for bytes past the end: an earlier run got the whole file and stopped at its check.
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return hash_file(partial),
            status if status.is_success() && status != StatusCode::PARTIAL_CONTENT => 0,
            status => {
                return Err(DownloadError::Status {
                    url: url.to_string(),
                    status,
                });
            }
        };
        if is_web_page(&response) && !names_a_document(dest) {
            return Err(DownloadError::WebPage {
                url: url.to_string(),
            });
        }
        let total = response.content_length().map(|rest| start + rest);
        receive(response, dest, partial, start, total)
    }
}

fn check_existing(dest: &Path, pin: Option<Sha256>) -> Result<(), DownloadError> {
    let Some(expected) = pin else {
        return Ok(());
    };
    let actual = hash_file(dest)?;
    if actual == expected {
        Ok(())
    } else {
        // Not removed: it may be a file someone put there on purpose.
        Err(DownloadError::ExistingMismatch {
            file: dest.to_path_buf(),
            expected,
            actual,
        })
    }
}

/// Opens the partial file to continue at `start` (0: from the beginning), with the digest of what it holds.
fn open_partial(partial: &Path, start: u64) -> Result<(File, sha2::Sha256), DownloadError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(start == 0)
        .open(partial)
        .map_err(|source| io(partial, source))?;
    let mut hasher = sha2::Sha256::new();
    if start > 0 {
        std::io::copy(&mut (&mut file).take(start), &mut hasher)
            .map_err(|source| io(partial, source))?;
        file.seek(std::io::SeekFrom::Start(start))
            .map_err(|source| io(partial, source))?;
    }
    Ok((file, hasher))
}

/// Copies the body into the partial file from `start` on, hashing the whole; a cut keeps what arrived, a full
/// disk removes it.
fn receive(
    mut response: Response,
    dest: &Path,
    partial: &Path,
    start: u64,
    total: Option<u64>,
) -> Result<Sha256, DownloadError> {
    let (mut file, mut hasher) = open_partial(partial, start)?;
    let progress = indicatif::ProgressBar::new(total.unwrap_or(0)).with_position(start);
    let mut received = start;
    let mut buffer = vec![0u8; 1 << 16];
    let cut = |received, source| DownloadError::Cut {
        file: dest.to_path_buf(),
        partial: partial.to_path_buf(),
        received,
        total,
        source,
    };
    loop {
        let n = match response.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(cut(received, Some(e))),
        };
        if let Err(e) = file.write_all(&buffer[..n]) {
            return Err(write_failed(e, dest, partial, received, total));
        }
        hasher.update(&buffer[..n]);
        received += n as u64;
        progress.set_position(received);
    }
    progress.finish_and_clear();
    if total.is_some_and(|t| received < t) {
        return Err(cut(received, None));
    }
    file.sync_all()
        .map_err(|e| write_failed(e, dest, partial, received, total))?;
    Ok(Sha256(hasher.finalize().into()))
}

fn write_failed(
    error: std::io::Error,
    dest: &Path,
    partial: &Path,
    written: u64,
    total: Option<u64>,
) -> DownloadError {
    if error.kind() == ErrorKind::StorageFull {
        // What arrived is of no use without room for the rest, and it holds the space others need.
        let _ = std::fs::remove_file(partial);
        DownloadError::DiskFull {
            file: dest.to_path_buf(),
            written,
            total,
        }
    } else {
        io(partial, error)
    }
}

fn hash_file(path: &Path) -> Result<Sha256, DownloadError> {
    let mut file = File::open(path).map_err(|source| io(path, source))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| io(path, source))?;
    Ok(Sha256(hasher.finalize().into()))
}

/// The first byte of a `206 Partial Content` answer (`Content-Range: bytes START-END/TOTAL`).
fn range_start(response: &Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split(['-', '/']).next()?.trim().parse().ok()
}

fn is_web_page(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/html"))
}

fn names_a_document(dest: &Path) -> bool {
    dest.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
}

fn io(path: &Path, source: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}
