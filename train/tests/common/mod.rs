//! What the train crate's tests share: a miniature of the Debian packages' trees, built locally (no network),
//! and a build of it.

// Each test file uses its own part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgba, RgbaImage};
use s2v_train::dataset::build::{BuildOptions, build_default};

/// A picture: a coloured disc or square on a transparent background, shaded in a coarse checkered pattern of
/// its own (derived from its colour), so that pictures differ in more than the colour that SimCLR's colour
/// jitter and greyscale take away.
pub fn picture(path: &Path, colour: [u8; 3], square: bool) {
    let key = u32::from_le_bytes([colour[0], colour[1], colour[2], 1]);
    let mut img = RgbaImage::new(40, 30);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as i32 - 20, y as i32 - 15);
        let inside = if square {
            dx.abs() < 10 && dy.abs() < 10
        } else {
            dx * dx + dy * dy < 100
        };
        let cell = (x / 5) * 7 + y / 5;
        let dark = key.wrapping_mul(0x9E37_79B9).rotate_left(cell % 32) & 1 == 1;
        let shade = |c: u8| if dark { c / 3 } else { c };
        *p = if inside {
            Rgba([shade(colour[0]), shade(colour[1]), shade(colour[2]), 255])
        } else {
            Rgba([0, 0, 0, 0])
        };
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// A sound: a tone that sweeps from `hz`, 1.5 s at 22.05 kHz (the builder resamples it). Written as WAV under
/// the `.ogg` name Tux Paint uses: the decoder goes by content.
pub fn sound(path: &Path, hz: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..33_075 {
        let t = f64::from(i) / 22_050.0;
        let v = (2.0 * std::f64::consts::PI * hz * t * (1.0 + t)).sin() * 0.5;
        w.write_sample((v * 32_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A miniature of the two packages' trees, at their real paths: paired stamps of three fine labels in three
/// categories, three things each (songbirds, dogs, violins), image-only stamps and clip art.
pub fn package_tree(root: &Path) {
    let stamps = root.join("usr/share/tuxpaint/stamps");
    let paired = [
        ("animals/birds/blackbird", [20, 20, 20], 300.0),
        ("animals/birds/cuckoo", [120, 80, 40], 450.0),
        ("animals/birds/lark", [160, 140, 90], 700.0),
        ("animals/mammals/dogs/puppy", [240, 240, 240], 120.0),
        ("animals/mammals/dogs/terrier", [250, 170, 180], 200.0),
        ("animals/mammals/dogs/dog", [150, 100, 50], 250.0),
        ("hobbies/music/string/electric_violin", [200, 30, 30], 900.0),
        ("hobbies/music/string/violin", [130, 60, 20], 1300.0),
        ("hobbies/music/string/cello", [100, 50, 20], 1100.0),
    ];
    for (i, (name, colour, hz)) in paired.iter().enumerate() {
        picture(&stamps.join(format!("{name}.png")), *colour, i % 2 == 0);
        sound(&stamps.join(format!("{name}.ogg")), *hz);
    }
    for (i, name) in [
        "animals/birds/robin",
        "vehicles/car",
        "food/apple",
        "symbols/math/1",
    ]
    .iter()
    .enumerate()
    {
        picture(
            &stamps.join(format!("{name}.png")),
            [40 * i as u8, 200, 100],
            i % 2 == 1,
        );
    }
    // A symbol's spoken name is not a scene's sound: the builder must leave it out.
    sound(&stamps.join("symbols/math/1.ogg"), 500.0);
    let clipart = root.join("usr/share/openclipart/png");
    picture(
        &clipart.join("animals/birds/eagle.png"),
        [90, 60, 30],
        false,
    );
    picture(&clipart.join("transportation/bus.png"), [250, 200, 0], true);
    let doc = root.join("usr/share/doc/tuxpaint-stamps-default");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(
        doc.join("copyright"),
        "Files: *\nCopyright: 2002-2022 by Bill Kendrick\nLicense: GPL-2\n",
    )
    .unwrap();
}

/// A build from a local package tree (no download), one item group in three held out, no optional package.
pub fn local_build(out: &Path, unpacked: &Path) -> BuildOptions {
    BuildOptions {
        out: out.to_path_buf(),
        unpacked: Some(unpacked.to_path_buf()),
        test_every: 3,
        gcompris: false,
        soundfont: false,
        split_from: None,
        labelled_sources: false,
        weights_licence: None,
    }
}

/// The package tree unpacked in `dir/unpacked`, built into `dir/data` as `local_build` says; the data folder.
pub fn built_package_tree(dir: &Path) -> PathBuf {
    let unpacked = dir.join("unpacked");
    package_tree(&unpacked);
    let data = dir.join("data");
    build_default(&local_build(&data, &unpacked)).unwrap();
    data
}
