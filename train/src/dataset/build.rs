//! `s2v data build-default`: the default model's training data, built from Debian packages.
//!
//! Tux Paint's stamps pair a picture with a real sound effect for about a hundred items; its other stamps and a
//! selection of Openclipart's categories form the image-only set. The packages come from `apt-get download`
//! (the only network access) and are unpacked with `dpkg-deb`; every item records its package's licence.
//! On request GCompris adds its instruments (drawings) and farm animals (photos) with their sounds, read from
//! its Qt resource archives, and `fluid-soundfont-gm` gives the instrument pictures without a sound a few
//! notes of their instrument.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, GenericImageView, ImageBuffer, Rgb, RgbImage, imageops::FilterType};
use rayon::prelude::*;
use s2v_shared::audio::{SAMPLE_RATE, decode_audio, resample};

use super::qt_resources::{Resource, read_resources};
use super::soundfont::{SOUNDFONT_FILE, SOUNDFONT_PACKAGE, instrument_of, load_sound_font, play};
use super::{
    AUDIOS_DIR, IMAGE_ONLY_DIR, IMAGES_DIR, Item, PAIRS_CSV, Split, image_only_image_path,
    pair_audio_path, pair_image_path, read_items, write_items,
};

pub const TUXPAINT_PACKAGE: &str = "tuxpaint-stamps-default";
pub const OPENCLIPART_PACKAGE: &str = "openclipart-png";
pub const GCOMPRIS_PACKAGE: &str = "gcompris-qt-data";
const GCOMPRIS_RCC: &str = "usr/share/gcompris-qt/rcc";
/// GCompris's archives of pictures with sounds: (archive, category of its items; `None`: birds or mammals).
const GCOMPRIS_ARCHIVES: [(&str, Option<&str>); 2] = [
    ("instruments.rcc", Some("instrument")),
    ("explore_farm_animals.rcc", None),
];
/// Farm animals that are birds; the others are mammals.
const FARM_BIRDS: [&str; 6] = ["chicken", "duck", "owl", "rooster", "goose", "turkey"];
const TUXPAINT_STAMPS: &str = "usr/share/tuxpaint/stamps";
const OPENCLIPART_PNG: &str = "usr/share/openclipart/png";
/// Openclipart's folders whose pictures resemble the paired categories.
const OPENCLIPART_FOLDERS: [&str; 6] = [
    "animals",
    "transportation",
    "tools",
    "recreation/music",
    "food",
    "plants",
];

/// Side of the stored square pictures; the trainer scales them down to the model's resolution.
pub const STORED_SIZE: u32 = 128;

/// `s2v data build-default`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildOptions {
    #[arg(long)]
    pub out: PathBuf,
    /// Use packages already unpacked here (a tree with usr/share/...) instead of downloading them.
    #[arg(long)]
    pub unpacked: Option<PathBuf>,
    /// Hold out one item group in this many per category.
    #[arg(long, default_value_t = 5, conflicts_with = "split_from")]
    pub test_every: usize,
    /// Also pair GCompris's instruments and farm animals with their sounds (`gcompris-qt-data`). The
    /// held-out split moves with the items, so a model is evaluated on a build made the way its training data
    /// was (the shipped model was trained on a build without them).
    #[arg(long = "with-gcompris")]
    pub gcompris: bool,
    /// Also give the instrument pictures without a sound a phrase of their instrument, played from
    /// `fluid-soundfont-gm` (they move from the image-only set to the pairs; the held-out split moves too).
    #[arg(long = "with-soundfont")]
    pub soundfont: bool,
    /// Keep the held-out split of an earlier build in this folder: exactly its held-out items are held out,
    /// and a new pair of one of their groups is left out. Extra data (`--with-gcompris`, `--with-soundfont`)
    /// then only adds training pairs, and a model trained on the earlier build is judged on the same sounds.
    #[arg(long)]
    pub split_from: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct BuildSummary {
    pub pairs_train: usize,
    pub pairs_test: usize,
    pub image_only: usize,
    pub skipped: Vec<String>,
}

pub fn build_default(options: &BuildOptions) -> Result<BuildSummary> {
    // Read before the long build, so that a wrong folder fails at once.
    let kept_split = options
        .split_from
        .as_deref()
        .map(|earlier| held_out_items(earlier).map(|items| (earlier, items)))
        .transpose()?;
    let root = unpacked_packages(options)?;
    let out = options.out.as_path();
    for dir in [
        out.join(IMAGES_DIR),
        out.join(AUDIOS_DIR),
        out.join(IMAGE_ONLY_DIR).join(IMAGES_DIR),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut build = Build {
        root: &root,
        out,
        taken: TakenNames::default(),
        pairs: Vec::new(),
        image_only: Vec::new(),
        summary: BuildSummary::default(),
    };
    build.add_tuxpaint_stamps()?;
    if options.gcompris {
        build.add_gcompris()?;
    }
    build.add_openclipart()?;
    let Build {
        mut pairs,
        mut image_only,
        mut summary,
        ..
    } = build;
    if options.soundfont {
        play_instruments(&root, out, &mut pairs, &mut image_only, &mut summary)?;
    }
    if pairs.is_empty() {
        bail!(
            "no picture with a sound under {}",
            root.join(TUXPAINT_STAMPS).display()
        );
    }
    match kept_split {
        Some((earlier, held_out)) => keep_split(&mut pairs, &held_out, earlier, out, &mut summary)?,
        None => hold_out(&mut pairs, options.test_every.max(2)),
    }
    summary.pairs_train = pairs.iter().filter(|i| i.split == Split::Train).count();
    summary.pairs_test = pairs.len() - summary.pairs_train;
    summary.image_only = image_only.len();
    write_items(&out.join(PAIRS_CSV), &pairs)?;
    write_items(&out.join(IMAGE_ONLY_DIR).join(PAIRS_CSV), &image_only)?;
    Ok(summary)
}

/// The tree the packages are unpacked in: the one given, or one made by downloading them.
fn unpacked_packages(options: &BuildOptions) -> Result<PathBuf> {
    let root = match &options.unpacked {
        Some(root) => root.clone(),
        None => {
            let mut packages = vec![TUXPAINT_PACKAGE, OPENCLIPART_PACKAGE];
            if options.gcompris {
                packages.push(GCOMPRIS_PACKAGE);
            }
            if options.soundfont {
                packages.push(SOUNDFONT_PACKAGE);
            }
            fetch_and_unpack(&options.out, &packages)?
        }
    };
    let stamps = root.join(TUXPAINT_STAMPS);
    if !stamps.is_dir() {
        bail!(
            "{} is missing: is {TUXPAINT_PACKAGE} unpacked under {}?",
            stamps.display(),
            root.display()
        );
    }
    Ok(root)
}

/// A build under way: the items collected so far from each package, and what was skipped.
struct Build<'a> {
    root: &'a Path,
    out: &'a Path,
    taken: TakenNames,
    pairs: Vec<Item>,
    image_only: Vec<Item>,
    summary: BuildSummary,
}

impl Build<'_> {
    /// Tux Paint's stamps: a picture with a sound beside it is a pair, one without is image-only.
    fn add_tuxpaint_stamps(&mut self) -> Result<()> {
        let stamps_root = self.root.join(TUXPAINT_STAMPS);
        let licence = package_licence(self.root, TUXPAINT_PACKAGE);
        let mut stamps = Vec::new();
        for png in find_files(&stamps_root, "png")? {
            let relative = png.strip_prefix(&stamps_root)?.with_extension("");
            // Letters, digits and faces: glyphs with spoken names, not scenes with sounds.
            if !relative.starts_with("symbols") {
                stamps.push((png, relative));
            }
        }
        // Decoding and resizing the pictures is most of the build: all cores, the items kept in file order.
        let names: Vec<String> = stamps
            .iter()
            .map(|(_, relative)| self.taken.claim(item_name("tuxpaint", relative)))
            .collect();
        let out = self.out;
        let converted: Vec<_> = stamps
            .par_iter()
            .zip(names)
            .map(|((png, relative), name)| {
                let sound = png.with_extension("ogg");
                let paired = sound.exists();
                let result = if paired {
                    convert_audio(&sound, &pair_audio_path(out, &name))
                        .and_then(|()| convert_image(png, &pair_image_path(out, &name)))
                } else {
                    convert_image(png, &image_only_image_path(out, &name))
                };
                let item = Item {
                    name,
                    category: category_of(relative),
                    source: format!("{TUXPAINT_PACKAGE}:{}", relative.display()),
                    licence: licence.clone(),
                    split: Split::Train,
                };
                (png, paired, item, result)
            })
            .collect();
        for (png, paired, item, result) in converted {
            match result {
                Ok(()) if paired => self.pairs.push(item),
                Ok(()) => self.image_only.push(item),
                Err(e) => self.skip(png.display(), e),
            }
        }
        Ok(())
    }

    /// GCompris's instruments and farm animals, each drawing or photo with its sound.
    fn add_gcompris(&mut self) -> Result<()> {
        let licence = package_licence(self.root, GCOMPRIS_PACKAGE);
        for (archive, category) in GCOMPRIS_ARCHIVES {
            let path = self.root.join(GCOMPRIS_RCC).join(archive);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "reading {}: is {GCOMPRIS_PACKAGE} unpacked?",
                    path.display()
                )
            })?;
            let resources =
                read_resources(&bytes).with_context(|| format!("reading {}", path.display()))?;
            let licences = resource_licences(&resources);
            let licence_of = |resource: &Resource| {
                licences
                    .get(resource.path.as_str())
                    .cloned()
                    .unwrap_or_else(|| licence.clone())
            };
            let archive_stem = archive.trim_end_matches(".rcc");
            for (stem, sound, picture) in gcompris_pairs(&resources) {
                let name = self.taken.claim(item_name(
                    "gcompris",
                    Path::new(&format!("{archive_stem}/{stem}")),
                ));
                let converted = convert_audio_bytes(
                    &sound.data,
                    Some("ogg"),
                    &pair_audio_path(self.out, &name),
                )
                .and_then(|()| {
                    save_picture(&decode_picture(picture)?, &pair_image_path(self.out, &name))
                });
                let category = category.unwrap_or(if FARM_BIRDS.contains(&stem.as_str()) {
                    "bird"
                } else {
                    "mammal"
                });
                match converted {
                    Ok(()) => self.pairs.push(Item {
                        name,
                        category: category.to_string(),
                        source: format!(
                            "{GCOMPRIS_PACKAGE}:{archive}/{}",
                            sound.path.trim_end_matches(".ogg")
                        ),
                        licence: format!(
                            "sound: {}; picture: {}",
                            licence_of(sound),
                            licence_of(picture)
                        ),
                        split: Split::Train,
                    }),
                    Err(e) => self.skip(format!("{}:{}", path.display(), sound.path), e),
                }
            }
        }
        Ok(())
    }

    /// Openclipart's pictures in the folders whose pictures resemble the paired categories: image-only.
    fn add_openclipart(&mut self) -> Result<()> {
        let openclipart_root = self.root.join(OPENCLIPART_PNG);
        let licence = package_licence(self.root, OPENCLIPART_PACKAGE);
        let mut clipart = Vec::new();
        for folder in OPENCLIPART_FOLDERS {
            let dir = openclipart_root.join(folder);
            if dir.is_dir() {
                for png in find_files(&dir, "png")? {
                    let relative = png.strip_prefix(&openclipart_root)?.with_extension("");
                    clipart.push((png, relative));
                }
            }
        }
        let names: Vec<String> = clipart
            .iter()
            .map(|(_, relative)| self.taken.claim(item_name("openclipart", relative)))
            .collect();
        let out = self.out;
        let converted: Vec<_> = clipart
            .par_iter()
            .zip(names)
            .map(|((png, relative), name)| -> Result<Item> {
                convert_image(png, &image_only_image_path(out, &name))?;
                Ok(Item {
                    name,
                    category: category_of(relative),
                    source: format!("{OPENCLIPART_PACKAGE}:{}", relative.display()),
                    licence: licence.clone(),
                    split: Split::Train,
                })
            })
            .collect();
        for ((png, _), result) in clipart.iter().zip(converted) {
            match result {
                Ok(item) => self.image_only.push(item),
                Err(e) => self.skip(png.display(), e),
            }
        }
        Ok(())
    }

    fn skip(&mut self, what: impl std::fmt::Display, error: anyhow::Error) {
        self.summary.skipped.push(format!("{what}: {error:#}"));
    }
}

/// Gives every image-only instrument picture whose file name names an instrument a phrase of that instrument
/// from the SoundFont, and moves it to the pairs.
fn play_instruments(
    root: &Path,
    out: &Path,
    pairs: &mut Vec<Item>,
    image_only: &mut Vec<Item>,
    summary: &mut BuildSummary,
) -> Result<()> {
    let path = root.join(SOUNDFONT_FILE);
    let font = load_sound_font(&path)
        .with_context(|| format!("is {SOUNDFONT_PACKAGE} unpacked under {}?", root.display()))?;
    let licence = package_licence(root, SOUNDFONT_PACKAGE);
    let mut kept = Vec::new();
    for mut item in image_only.drain(..) {
        let instrument = if item.category == "instrument" {
            instrument_of(source_file(&item))
        } else {
            None
        };
        let Some(instrument) = instrument else {
            kept.push(item);
            continue;
        };
        let played = play(&font, instrument).and_then(|samples| {
            write_wav(&samples, &pair_audio_path(out, &item.name))?;
            let from = image_only_image_path(out, &item.name);
            let to = pair_image_path(out, &item.name);
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))
        });
        match played {
            Ok(()) => {
                item.licence = format!(
                    "picture: {}; sound: {licence} ({SOUNDFONT_PACKAGE}: {})",
                    item.licence, instrument.name
                );
                pairs.push(item);
            }
            Err(e) => {
                summary.skipped.push(format!("{}: {e:#}", item.source));
                kept.push(item);
            }
        }
    }
    *image_only = kept;
    Ok(())
}

/// The sounds of a GCompris archive with the picture of the same thing beside them: `<name>.ogg` with
/// `<name>.webp` (a photo) or else `<name>.svg` (a drawing), also when the sound's name is the plural
/// (`chickens.ogg` with `chicken.webp`). Sounds without a picture are left out.
fn gcompris_pairs(resources: &[Resource]) -> Vec<(String, &Resource, &Resource)> {
    let by_path: BTreeMap<&str, &Resource> =
        resources.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut pairs = Vec::new();
    for sound in resources {
        let Some(base) = sound.path.strip_suffix(".ogg") else {
            continue;
        };
        let singular = base.strip_suffix('s').unwrap_or(base);
        let picture = [base, singular].into_iter().find_map(|b| {
            ["webp", "svg"]
                .iter()
                .find_map(|ext| by_path.get(format!("{b}.{ext}").as_str()).copied())
                .map(|picture| (b, picture))
        });
        if let Some((matched, picture)) = picture {
            let stem = matched.rsplit('/').next().unwrap_or(matched).to_lowercase();
            pairs.push((stem, sound, picture));
        }
    }
    pairs
}

/// Each file's licence, from the `README` files beside GCompris's resources: blocks of `License: L` followed
/// by `Files:` and one file name a line, and lines such as `drum_kit.ogg: <source> <licence>`. Files that no
/// README names take the package's licence.
fn resource_licences(resources: &[Resource]) -> BTreeMap<String, String> {
    let mut licences = BTreeMap::new();
    for readme in resources.iter().filter(|r| r.path.ends_with("/README")) {
        let folder = &readme.path[..readme.path.len() - "README".len()];
        let text = String::from_utf8_lossy(&readme.data);
        let (mut licence, mut listing) = (None::<String>, false);
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                (licence, listing) = (None, false);
            } else if let Some(value) = line.strip_prefix("License:") {
                licence = Some(value.trim().to_string());
            } else if line == "Files:" {
                listing = true;
            } else if listing && !line.contains(':') {
                if let Some(licence) = &licence {
                    licences.insert(format!("{folder}{line}"), licence.clone());
                }
            } else if let Some((file, note)) = line.split_once(": ")
                && !file.contains(' ')
                && file.contains('.')
                && note.to_lowercase().contains("licen")
            {
                // The note is a source address and then the licence's name.
                let named = note.split_once(' ').map_or(note, |(_, rest)| rest);
                licences.insert(format!("{folder}{file}"), named.trim().to_string());
            }
        }
    }
    licences
}

/// A picture from an archive: SVG drawn at 256 px on its longest side (text left out), anything else decoded.
fn decode_picture(picture: &Resource) -> Result<DynamicImage> {
    if !picture.path.ends_with(".svg") {
        return Ok(image::load_from_memory(&picture.data)?);
    }
    let tree = resvg::usvg::Tree::from_data(&picture.data, &resvg::usvg::Options::default())?;
    let size = tree.size();
    let scale = 256.0 / size.width().max(size.height()).max(1.0);
    let (w, h) = (
        (size.width() * scale).ceil().max(1.0) as u32,
        (size.height() * scale).ceil().max(1.0) as u32,
    );
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(w, h).context("an SVG of no size cannot be drawn")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let rgba: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    let buffer = image::RgbaImage::from_raw(w, h, rgba).context("an SVG's pixels")?;
    Ok(DynamicImage::ImageRgba8(buffer))
}

/// Downloads the packages into `out/debs` (unless already there) and unpacks them into `out/unpacked`.
fn fetch_and_unpack(out: &Path, packages: &[&str]) -> Result<PathBuf> {
    let debs = out.join("debs");
    let unpacked = out.join("unpacked");
    std::fs::create_dir_all(&debs)?;
    for &package in packages {
        let existing = || -> Result<Option<PathBuf>> {
            Ok(std::fs::read_dir(&debs)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
                    })
                }))
        };
        let deb = match existing()? {
            Some(deb) => deb,
            None => {
                run(Command::new("apt-get")
                    .arg("download")
                    .arg(package)
                    .current_dir(&debs))?;
                existing()?.with_context(|| format!("apt-get download {package} left no .deb"))?
            }
        };
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    Ok(unpacked)
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The licence of a package's main files, from its `copyright`: the first `License:` field, or, in a file
/// that is not machine-readable, the licence its text releases the files under ("under the MIT license"), or
/// a public-domain dedication (Openclipart's).
fn package_licence(root: &Path, package: &str) -> String {
    let path = root.join("usr/share/doc").join(package).join("copyright");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!("unknown: no {}", path.display());
    };
    licence_in(&text).unwrap_or_else(|| format!("unknown: see {}", path.display()))
}

fn licence_in(copyright: &str) -> Option<String> {
    let field = copyright
        .lines()
        .find_map(|l| l.strip_prefix("License:").map(str::trim))
        .filter(|l| !l.is_empty());
    field.map(str::to_string).or_else(|| {
        let words: Vec<&str> = copyright.split_whitespace().collect();
        let released = words.windows(4).find_map(|w| {
            (w[0] == "under" && w[1] == "the" && w[3].to_lowercase().starts_with("license"))
                .then(|| w[2].to_string())
        });
        released.or_else(|| {
            copyright
                .to_lowercase()
                .contains("public domain dedication")
                .then(|| "public domain".to_string())
        })
    })
}

fn find_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The item names given so far in a build. Two sources whose paths differ only in characters that
/// `item_name` replaces (Openclipart's `magnolia-white_patricia__01` and `magnolia_white_patricia__01`) would
/// otherwise share a name, and one picture would overwrite the other's file while both rows stayed listed.
#[derive(Default)]
struct TakenNames(HashSet<String>);

impl TakenNames {
    /// `name`, or the first of `name_2`, `name_3`, ... not yet taken.
    fn claim(&mut self, name: String) -> String {
        if self.0.insert(name.clone()) {
            return name;
        }
        let mut n = 2;
        loop {
            let candidate = format!("{name}_{n}");
            if self.0.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

/// `source_path_to_item`, lower case, with every other character an underscore.
fn item_name(source: &str, relative: &Path) -> String {
    let path = relative.to_string_lossy().to_lowercase();
    let cleaned: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{source}_{cleaned}")
}

/// The category of a picture from its folder, in both packages' trees.
pub fn category_of(relative: &Path) -> String {
    let path = relative.to_string_lossy().to_lowercase();
    let has = |part: &str| path.split('/').any(|p| p == part);
    let category = if has("birds") {
        "bird"
    } else if has("mammals") || has("marsupials") {
        "mammal"
    } else if has("insects")
        || has("bugs")
        || has("amphibians")
        || has("amphibian")
        || has("lizards")
    {
        "small creature"
    } else if has("music") {
        "instrument"
    } else if has("vehicles") || has("transportation") || has("space") {
        "vehicle"
    } else if has("household") || has("tools") || has("hobbies") {
        "household"
    } else if has("animals") {
        "other animal"
    } else if has("food") || has("plants") {
        "food and plant"
    } else {
        "other"
    };
    category.to_string()
}

/// Items that are variants of one thing (`pig`, `pig_golden2`; `scissors_small_open`, `..._closed`) share a
/// group, and a group is held out whole: no picture or sound of a test item reaches training.
pub fn group_of(item: &Item) -> String {
    let file = source_file(item);
    let first = file.split(['_', '-']).next().unwrap_or(file);
    first
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// The file an item came from, without folder or extension: `violin_ganson` for
/// `openclipart-png:recreation/music/violin_ganson` (the item's name when its source names no file).
fn source_file(item: &Item) -> &str {
    let source_path = item
        .source
        .split_once(':')
        .map_or(item.name.as_str(), |(_, path)| path);
    source_path.rsplit('/').next().unwrap_or(source_path)
}

/// Marks one group in `every` of each category (those with at least three groups) as held out.
fn hold_out(pairs: &mut [Item], every: usize) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in pairs.iter() {
        let entry = groups.entry(item.category.clone()).or_default();
        let group = group_of(item);
        if !entry.contains(&group) {
            entry.push(group);
        }
    }
    for item in pairs.iter_mut() {
        let category_groups = &groups[&item.category];
        if category_groups.len() < 3 {
            continue;
        }
        let mut sorted = category_groups.clone();
        sorted.sort();
        let index = sorted
            .iter()
            .position(|g| *g == group_of(item))
            .unwrap_or(0);
        if index % every == every / 2 {
            item.split = Split::Test;
        }
    }
}

/// The held-out items of the build at `earlier`.
fn held_out_items(earlier: &Path) -> Result<Vec<Item>> {
    let items = read_items(&earlier.join(PAIRS_CSV))
        .with_context(|| format!("reading the split to keep from {}", earlier.display()))?;
    let held_out: Vec<Item> = items
        .into_iter()
        .filter(|i| i.split == Split::Test)
        .collect();
    if held_out.is_empty() {
        bail!(
            "{} holds no item out: there is no split to keep",
            earlier.display()
        );
    }
    Ok(held_out)
}

/// Holds out exactly `held_out`, the items held out in the build at `earlier` (matched by source), and drops
/// the other pairs of their groups (with their files), which would otherwise put a held-out thing into
/// training.
fn keep_split(
    pairs: &mut Vec<Item>,
    held_out: &[Item],
    earlier: &Path,
    out: &Path,
    summary: &mut BuildSummary,
) -> Result<()> {
    let sources: HashSet<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    for item in held_out {
        if !sources.contains(item.source.as_str()) {
            bail!(
                "{}'s held-out item {} ({}) is not in this build: was it made from other packages?",
                earlier.display(),
                item.name,
                item.source
            );
        }
    }
    let held_sources: HashSet<&str> = held_out.iter().map(|i| i.source.as_str()).collect();
    let held_groups: HashSet<String> = held_out.iter().map(group_of).collect();
    let mut kept = Vec::with_capacity(pairs.len());
    for mut item in pairs.drain(..) {
        let group = group_of(&item);
        if held_sources.contains(item.source.as_str()) {
            item.split = Split::Test;
        } else if held_groups.contains(&group) {
            for file in [
                pair_image_path(out, &item.name),
                pair_audio_path(out, &item.name),
            ] {
                std::fs::remove_file(&file)
                    .with_context(|| format!("removing {}", file.display()))?;
            }
            summary.skipped.push(format!(
                "{}: its group `{group}` is held out in {}",
                item.name,
                earlier.display()
            ));
            continue;
        } else {
            item.split = Split::Train;
        }
        kept.push(item);
    }
    *pairs = kept;
    Ok(())
}

/// Decodes any supported audio, brings it to 16 kHz mono and writes 16-bit PCM WAV.
fn convert_audio(source: &Path, target: &Path) -> Result<()> {
    let bytes = std::fs::read(source)?;
    convert_audio_bytes(&bytes, source.extension().and_then(|e| e.to_str()), target)
}

fn convert_audio_bytes(bytes: &[u8], hint: Option<&str>, target: &Path) -> Result<()> {
    let decoded = decode_audio(bytes, hint)?;
    write_wav(
        &resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?,
        target,
    )
}

/// 16 kHz mono samples as 16-bit PCM WAV.
fn write_wav(samples: &[f64], target: &Path) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(target, spec)?;
    for &s in samples {
        writer.write_sample((s.clamp(-1.0, 1.0) * f64::from(i16::MAX)).round() as i16)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Composites a (transparent) picture onto white, pads it to a square and stores it at [`STORED_SIZE`].
fn convert_image(source: &Path, target: &Path) -> Result<()> {
    // Some clip art is drawn at poster size: allow more than the decoder's default 512 MiB.
    let mut reader = image::ImageReader::open(source)?.with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    save_picture(&reader.decode()?, target)
}

fn save_picture(picture: &DynamicImage, target: &Path) -> Result<()> {
    square_on_white(picture, STORED_SIZE).save_with_format(target, image::ImageFormat::Jpeg)?;
    Ok(())
}

pub fn square_on_white(picture: &DynamicImage, size: u32) -> RgbImage {
    let (w, h) = picture.dimensions();
    let side = w.max(h).max(1);
    let rgba = picture.to_rgba8();
    let mut canvas: RgbImage = ImageBuffer::from_pixel(side, side, Rgb([255, 255, 255]));
    let (dx, dy) = ((side - w) / 2, (side - h) / 2);
    for (x, y, p) in rgba.enumerate_pixels() {
        let a = f32::from(p[3]) / 255.0;
        let blend = |c: u8| (f32::from(c) * a + 255.0 * (1.0 - a)).round() as u8;
        canvas.put_pixel(x + dx, y + dy, Rgb([blend(p[0]), blend(p[1]), blend(p[2])]));
    }
    image::imageops::resize(&canvas, size, size, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_already_given_gets_the_first_free_suffix() {
        let mut taken = TakenNames::default();
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x");
        assert_eq!(taken.claim("openclipart_x_2".into()), "openclipart_x_2");
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x_3");
        assert_eq!(taken.claim("openclipart_x".into()), "openclipart_x_4");
        assert_eq!(taken.claim("openclipart_y".into()), "openclipart_y");
    }

    #[test]
    fn licences_come_from_the_readmes_beside_the_resources() {
        let readme = Resource {
            path: "a/resource/README".into(),
            data: b"drum_kit.ogg: http://www.freesound.org/x?id=29534  Creative Commons Sampling Plus 1.0 \
                    License.\nall other ogg files are released under the GPL\n\nCopyright: 2020 T. G.\n\
                    License: CC-BY-SA 4.0\nFiles:\ncat.svg\ndog.svg\n\nCopyright: B. C.\nLicense: GPLv3\n\
                    Files:\ncat.ogg\n"
                .to_vec(),
        };
        let licences = resource_licences(&[readme]);
        let get = |file: &str| {
            licences
                .get(&format!("a/resource/{file}"))
                .map(String::as_str)
        };
        assert_eq!(
            get("drum_kit.ogg"),
            Some("Creative Commons Sampling Plus 1.0 License.")
        );
        assert_eq!(get("cat.svg"), Some("CC-BY-SA 4.0"));
        assert_eq!(get("dog.svg"), Some("CC-BY-SA 4.0"));
        assert_eq!(get("cat.ogg"), Some("GPLv3"));
        assert_eq!(get("dog.ogg"), None);
    }

    #[test]
    fn licences_are_read_from_machine_readable_and_plain_copyright_files() {
        assert_eq!(
            licence_in("Format: ...\nFiles: *\nLicense: GPL-2\n").as_deref(),
            Some("GPL-2")
        );
        // fluid-soundfont-gm: an empty field, then the text.
        let fluid = "License:\n\n From README:\n  \"I hereby release Fluid under the MIT license, as\n described in COPYING.\"\n  samples found in the public domain";
        assert_eq!(licence_in(fluid).as_deref(), Some("MIT"));
        // openclipart-png.
        let clipart = "Copyright:\n\n creative commons Public Domain Dedication\n";
        assert_eq!(licence_in(clipart).as_deref(), Some("public domain"));
        assert_eq!(licence_in("Copyright: someone\n"), None);
    }

    #[test]
    fn categories_follow_both_packages_folders() {
        assert_eq!(category_of(Path::new("animals/birds/crow")), "bird");
        assert_eq!(
            category_of(Path::new("animals/mammals/cats/lion")),
            "mammal"
        );
        assert_eq!(
            category_of(Path::new("hobbies/music/string/cello")),
            "instrument"
        );
        assert_eq!(category_of(Path::new("transportation/airplane")), "vehicle");
        assert_eq!(category_of(Path::new("household/tools/saw")), "household");
        assert_eq!(category_of(Path::new("seasonal/christmas/gift")), "other");
    }

    #[test]
    fn variants_of_one_thing_are_held_out_together() {
        let item = |path: &str| Item {
            name: item_name("tuxpaint", Path::new(path)),
            category: "mammal".into(),
            source: format!("{TUXPAINT_PACKAGE}:{path}"),
            licence: "GPL-2".into(),
            split: Split::Train,
        };
        let mut pairs: Vec<Item> = [
            "m/pig",
            "m/pig_golden",
            "m/pig_golden2",
            "m/cow",
            "m/cow_white",
            "m/horse",
            "m/zebra",
            "m/lion",
            "m/tiger",
        ]
        .iter()
        .map(|p| item(p))
        .collect();
        hold_out(&mut pairs, 3);
        let test: Vec<&str> = pairs
            .iter()
            .filter(|i| i.split == Split::Test)
            .map(|i| i.source.as_str())
            .collect();
        assert!(!test.is_empty());
        for group in ["pig", "cow"] {
            let held: Vec<bool> = pairs
                .iter()
                .filter(|i| group_of(i) == group)
                .map(|i| i.split == Split::Test)
                .collect();
            assert!(held.iter().all(|h| *h == held[0]), "{group} split apart");
        }
    }

    #[test]
    fn transparent_pictures_land_on_white_squares() {
        let mut picture = image::RgbaImage::new(4, 2);
        picture.put_pixel(0, 0, image::Rgba([0, 0, 0, 255]));
        let square = square_on_white(&DynamicImage::ImageRgba8(picture), 8);
        assert_eq!(square.dimensions(), (8, 8));
        assert_eq!(square.get_pixel(7, 7), &Rgb([255, 255, 255]));
        assert!(
            square.get_pixel(0, 2)[0] < 128,
            "the opaque black pixel survives"
        );
    }
}
