//! The audio front end on real files of every supported container and codec (made with sox, in tests/data).

use s2v_shared::audio::{FREQ_BINS, TIME_FRAMES, decode_audio, spectrogram_from_bytes};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(s2v_tests::checkout().join("tests/data").join(name)).unwrap()
}

/// The log-spectrogram averaged over time: a stationary tone's fingerprint, insensitive to codec delay.
fn mean_spectrum(name: &str) -> Vec<f64> {
    let extension = name.rsplit('.').next();
    let s =
        spectrogram_from_bytes(&data(name), extension).unwrap_or_else(|e| panic!("{name}: {e}"));
    (0..FREQ_BINS)
        .map(|f| {
            s.data[f * TIME_FRAMES..(f + 1) * TIME_FRAMES]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / TIME_FRAMES as f64
        })
        .collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let var = |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>();
    cov / (var(a, ma) * var(b, mb)).sqrt()
}

#[test]
fn flac_ogg_and_mp3_decode_to_the_same_stereo_tone() {
    // 1.5 s at 44.1 kHz, 440 Hz left and 660 Hz right, downmixed to mono. MP3 may pad to whole frames of
    // 1152 samples when the encoder wrote no gapless tag.
    for name in ["tone.flac", "tone.ogg", "tone.mp3"] {
        let decoded = decode_audio(&data(name), name.rsplit('.').next())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.sample_rate, 44100, "{name}");
        assert!(
            (decoded.samples.len() as i64 - 66150).abs() < 2 * 1152,
            "{name}: {} samples",
            decoded.samples.len()
        );
    }
    let lossless = mean_spectrum("tone.flac");
    // 440 Hz and 660 Hz fall in bins 14 and 21 of the 31.25 Hz grid.
    let peak =
        |s: &[f64], lo: usize, hi: usize| (lo..hi).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
    assert_eq!(peak(&lossless, 5, 18), 14);
    assert_eq!(peak(&lossless, 18, 30), 21);
    for lossy in ["tone.ogg", "tone.mp3"] {
        let c = correlation(&lossless, &mean_spectrum(lossy));
        assert!(c > 0.9, "{lossy}: spectrum correlation with FLAC {c}");
    }
}

#[test]
fn other_sample_rates_are_resampled_to_16k() {
    // A 1 kHz tone at 22.05 kHz must peak at bin 1000 / 31.25 = 32 after resampling.
    let s = mean_spectrum("tone_22k.wav");
    let peak = (0..FREQ_BINS)
        .max_by(|&a, &b| s[a].total_cmp(&s[b]))
        .unwrap();
    assert_eq!(peak, 32);
}

#[test]
fn corrupt_bytes_inside_a_valid_container_do_not_panic() {
    let mut bytes = data("tone.flac");
    let len = bytes.len();
    for b in &mut bytes[len / 3..len / 3 + 4000] {
        *b = 0xA5;
    }
    let _ = spectrogram_from_bytes(&bytes, Some("flac"));
    let mut ogg = data("tone.ogg");
    ogg.truncate(ogg.len() / 2);
    let _ = spectrogram_from_bytes(&ogg, Some("ogg"));
}

/// Deterministic byte mutations of every test file: decoding may fail, but must never panic.
#[test]
fn mutated_files_never_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in ["tone.flac", "tone.ogg", "tone.mp3", "tone_22k.wav"] {
        let original = data(name);
        for round in 0..60 {
            let mut bytes = original.clone();
            match round % 3 {
                0 => {
                    for _ in 0..8 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                _ => {
                    // Damage the header region, where lengths and sample rates live.
                    let at = (next() as usize) % bytes.len().min(64);
                    bytes[at] = next() as u8;
                }
            }
            let _ = decode_audio(&bytes, name.rsplit('.').next());
        }
    }
}
