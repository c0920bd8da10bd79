//! `s2v weights fetch`: the authors' published weights, downloaded with resume, checked against the catalog's
//! digests and converted into the files `s2v` and the server read.
//!
//! Every step leaves its output under its final name only when that output is whole, and a step whose output
//! is already there is skipped, so a run that stopped anywhere (a cut connection, a full disk, Ctrl-C) is
//! finished by running the same command again.

pub mod catalog;
pub mod download;
pub mod unpack;

use std::path::{Path, PathBuf};

use anyhow::Context;
use s2v_serving::device::{DeviceKind, dispatch};

use crate::commands::Convert;
use crate::unclip::ConvertUnclip;
use catalog::{Bundle, Catalog, Step};
use download::{Downloaded, Downloader};

pub struct FetchOptions {
    pub catalog: Catalog,
    /// The folder every bundle's files go to.
    pub out: PathBuf,
    /// Keep downloads whose digest the catalog does not pin.
    pub trust_unpinned: bool,
    /// Where the conversions run.
    pub device: DeviceKind,
}

/// Fetches the bundle `name` and those it needs; returns the bundles fetched, in order.
pub fn fetch(name: &str, options: &FetchOptions) -> anyhow::Result<Vec<String>> {
    let downloader = Downloader::new(options.trust_unpinned)?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let plan = options.catalog.plan(name)?;
    for bundle in &plan {
        fetch_bundle(bundle, &downloader, options)
            .with_context(|| format!("cannot fetch {}", bundle.name))?;
    }
    Ok(plan.iter().map(|b| b.name.clone()).collect())
}

fn fetch_bundle(
    bundle: &Bundle,
    downloader: &Downloader,
    options: &FetchOptions,
) -> anyhow::Result<()> {
    eprintln!("{}: {}", bundle.name, bundle.about);
    for step in &bundle.steps {
        run_step(step, downloader, options)?;
    }
    Ok(())
}

fn run_step(step: &Step, downloader: &Downloader, options: &FetchOptions) -> anyhow::Result<()> {
    let out = &options.out;
    match step {
        Step::Download { url, file, sha256 } => {
            let dest = file.under(out);
            match downloader.fetch(url, &dest, *sha256)? {
                Downloaded::Fetched(digest) if sha256.is_none() => {
                    eprintln!("  downloaded {file} (SHA-256 {digest}, not pinned by the catalog)")
                }
                Downloaded::Fetched(_) => eprintln!("  downloaded {file} (SHA-256 as pinned)"),
                Downloaded::AlreadyThere => eprintln!("  {file} is already there"),
            }
        }
        Step::Unpack { archive, members } => {
            if members.iter().all(|m| out.join(m.as_str()).exists()) {
                return Ok(());
            }
            unpack::unpack_members(&archive.under(out), members, out)?;
            eprintln!("  unpacked {} from {archive}", names(members));
        }
        Step::Convert { from, network, to } => {
            let dest = to.under(out);
            if dest.exists() {
                return Ok(());
            }
            convert(&from.under(out), *network, &dest, options.device)?;
            eprintln!("  converted {from} to {to}");
        }
        Step::ConvertUnclip {
            diffusers,
            audio_encoder,
            to,
        } => {
            let dest = to.under(out);
            if dest.join(s2v_models::unclip::convert::MANIFEST).exists() {
                return Ok(());
            }
            let job = ConvertUnclip {
                diffusers: diffusers.under(out),
                audio_encoder: audio_encoder.under(out),
                out: dest,
            };
            dispatch(options.device, job)?;
            eprintln!("  converted {diffusers} and {audio_encoder} to {to}/");
        }
    }
    Ok(())
}

/// `s2v convert` (which writes its output whole or not at all).
fn convert(
    from: &Path,
    network: s2v_models::NetworkKind,
    dest: &Path,
    device: DeviceKind,
) -> anyhow::Result<()> {
    let job = Convert {
        input: from.to_path_buf(),
        output: dest.to_path_buf(),
        network: Some(network),
        half: false,
    };
    dispatch(device, job).map(|_| ())
}

fn names(members: &[catalog::FileName]) -> String {
    members
        .iter()
        .map(catalog::FileName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
