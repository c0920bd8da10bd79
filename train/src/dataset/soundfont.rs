//! Sounds for instrument pictures that have none: a few notes of the General MIDI instrument that the picture
//! shows, played from `fluid-soundfont-gm`'s SoundFont by rustysynth straight at 16 kHz.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};
use s2v_shared::audio::SAMPLE_RATE;

pub const SOUNDFONT_PACKAGE: &str = "fluid-soundfont-gm";
pub const SOUNDFONT_FILE: &str = "usr/share/sounds/sf2/FluidR3_GM.sf2";

/// What plays: a melodic General MIDI program (0-based) from a root key, or keys of the percussion set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    Melodic { program: u8, root: u8 },
    Percussion { keys: &'static [u8] },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instrument {
    pub name: &'static str,
    pub voice: Voice,
}

const fn melodic(name: &'static str, program: u8, root: u8) -> Instrument {
    Instrument {
        name,
        voice: Voice::Melodic { program, root },
    }
}

const fn percussion(name: &'static str, keys: &'static [u8]) -> Instrument {
    Instrument {
        name,
        voice: Voice::Percussion { keys },
    }
}

const ELECTRIC_BASS: Instrument = melodic("Electric Bass (finger)", 33, 36);
const TRUMPET: Instrument = melodic("Trumpet", 56, 60);
const HAND_DRUMS: Instrument = percussion("Hand drums (bongos, congas)", &[60, 61, 63, 64, 60, 63]);

/// The words of a picture's file name that name an instrument (all of them must appear), first match wins:
/// a bass guitar before a guitar. Roots put each instrument in its usual range.
const INSTRUMENTS: &[(&[&str], Instrument)] = &[
    (&["bass", "guitar"], ELECTRIC_BASS),
    (&["electric", "bass"], ELECTRIC_BASS),
    (
        &["electric", "guitar"],
        melodic("Electric Guitar (clean)", 27, 52),
    ),
    (&["guitar"], melodic("Acoustic Guitar (nylon)", 24, 52)),
    (&["piano"], melodic("Acoustic Grand Piano", 0, 60)),
    (&["dulcimer"], melodic("Dulcimer", 15, 60)),
    (&["violin"], melodic("Violin", 40, 67)),
    (&["cello"], melodic("Cello", 42, 48)),
    (&["harp"], melodic("Orchestral Harp", 46, 60)),
    (&["trumpet"], TRUMPET),
    (&["tpt"], TRUMPET),
    (&["trombone"], melodic("Trombone", 57, 48)),
    (&["horn"], melodic("French Horn", 60, 53)),
    (&["saxophone"], melodic("Alto Sax", 65, 56)),
    (&["oboe"], melodic("Oboe", 68, 67)),
    (&["flute"], melodic("Flute", 73, 72)),
    (
        &["drums"],
        percussion("Standard drum kit", &[36, 42, 38, 42, 36, 36, 38, 46]),
    ),
    (&["africandrum"], HAND_DRUMS),
    (&["djambf"], HAND_DRUMS),
    (&["derbouk"], HAND_DRUMS),
    (&["drum"], HAND_DRUMS),
    (&["maracas"], percussion("Maracas", &[70])),
];

/// Pictures about music rather than of an instrument (a clef, sheet music, a record), even when they name one.
const NOT_AN_INSTRUMENT: &[&str] = &["clef", "note", "notes", "theory", "record", "records"];

/// The instrument a picture's file name (`violin_colour_ganson`, `guitar_electric_bass`) shows, if any.
pub fn instrument_of(file_stem: &str) -> Option<Instrument> {
    let lower = file_stem.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
        .collect();
    if words.iter().any(|w| NOT_AN_INSTRUMENT.contains(w)) {
        return None;
    }
    INSTRUMENTS
        .iter()
        .find(|(needed, _)| needed.iter().all(|n| words.contains(n)))
        .map(|(_, instrument)| *instrument)
}

pub fn load_sound_font(path: &Path) -> Result<Arc<SoundFont>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let font = SoundFont::new(&mut BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("reading the SoundFont {}: {e:?}", path.display()))?;
    Ok(Arc::new(font))
}

/// Seconds between the notes of a phrase, and the ring after its last note.
const NOTE_SECONDS: f64 = 0.5;
const RING_SECONDS: f64 = 1.0;
/// Loudest sample of a rendered phrase.
const PEAK: f32 = 0.5;

/// A phrase of `instrument` at 16 kHz mono: an arpeggio and its chord for a melodic instrument, a rhythm for
/// percussion. Fails, rather than falling back to another instrument, when the SoundFont lacks the preset.
pub fn play(font: &Arc<SoundFont>, instrument: Instrument) -> Result<Vec<f64>> {
    let (bank, program) = match instrument.voice {
        Voice::Melodic { program, .. } => (0, i32::from(program)),
        Voice::Percussion { .. } => (128, 0),
    };
    if !font
        .get_presets()
        .iter()
        .any(|p| p.get_bank_number() == bank && p.get_patch_number() == program)
    {
        bail!(
            "the SoundFont has no preset {bank}:{program} for {}",
            instrument.name
        );
    }
    let mut synth = Synthesizer::new(font, &SynthesizerSettings::new(SAMPLE_RATE as i32))
        .map_err(|e| anyhow::anyhow!("starting the synthesiser: {e:?}"))?;
    // (seconds, channel, key, on): note events in time order.
    let mut events: Vec<(f64, i32, i32, bool)> = Vec::new();
    match instrument.voice {
        Voice::Melodic { program, root } => {
            const PROGRAM_CHANGE: i32 = 0xC0;
            synth.process_midi_message(0, PROGRAM_CHANGE, i32::from(program), 0);
            let keys = [0, 4, 7, 12].map(|step| i32::from(root) + step);
            for (i, key) in keys.iter().enumerate() {
                let start = i as f64 * NOTE_SECONDS;
                events.push((start, 0, *key, true));
                events.push((start + NOTE_SECONDS * 0.9, 0, *key, false));
            }
            let chord = keys.len() as f64 * NOTE_SECONDS;
            for key in keys {
                events.push((chord, 0, key, true));
                events.push((chord + 3.0 * NOTE_SECONDS, 0, key, false));
            }
        }
        Voice::Percussion { keys } => {
            let channel = Synthesizer::PERCUSSION_CHANNEL as i32;
            for i in 0..12 {
                let start = i as f64 * NOTE_SECONDS / 2.0;
                let key = i32::from(keys[i % keys.len()]);
                events.push((start, channel, key, true));
                events.push((start + NOTE_SECONDS / 4.0, channel, key, false));
            }
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let end = events.last().map_or(0.0, |e| e.0) + RING_SECONDS;
    let sample_at = |seconds: f64| (seconds * f64::from(SAMPLE_RATE)).round() as usize;
    let total = sample_at(end);
    let (mut left, mut right) = (vec![0f32; total], vec![0f32; total]);
    let mut done = 0;
    for (seconds, channel, key, on) in events {
        let at = sample_at(seconds).min(total);
        synth.render(&mut left[done..at], &mut right[done..at]);
        done = at;
        if on {
            synth.note_on(channel, key, 100);
        } else {
            synth.note_off(channel, key);
        }
    }
    synth.render(&mut left[done..], &mut right[done..]);
    let mono: Vec<f32> = left
        .iter()
        .zip(&right)
        .map(|(l, r)| (l + r) / 2.0)
        .collect();
    let peak = mono.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak <= 1e-4 {
        bail!("{} played silence", instrument.name);
    }
    Ok(mono.iter().map(|s| f64::from(s * PEAK / peak)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_their_instruments() {
        let program = |stem: &str| match instrument_of(stem).map(|i| i.voice) {
            Some(Voice::Melodic { program, .. }) => Some(program),
            Some(Voice::Percussion { .. }) => Some(128),
            None => None,
        };
        assert_eq!(program("violin_colour_ganson"), Some(40));
        assert_eq!(program("guitar_electric_bass"), Some(33));
        assert_eq!(program("bass_guitar_a_j__ashton_"), Some(33));
        assert_eq!(program("electric_guitar_andrea__01r"), Some(27));
        assert_eq!(program("guitar2"), Some(24));
        assert_eq!(program("harp1_ganson"), Some(46));
        assert_eq!(program("tpt_cubf_ganson"), Some(56));
        assert_eq!(program("french_horn_ganson"), Some(60));
        assert_eq!(program("drums_jarno_vasamaa_"), Some(128));
        assert_eq!(program("maracas_ganson"), Some(128));
        // About music, not an instrument.
        assert_eq!(program("bass_clef_01"), None);
        assert_eq!(program("piano_theory_ganson1"), None);
        assert_eq!(program("45_rpm_record_gerald_g__01"), None);
        assert_eq!(program("headphones_davide_pesent_"), None);
    }
}
