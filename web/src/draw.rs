//! Drawing what the model hears: the sound's waveform with the 10 s window marked, and the log-spectrogram.

use s2v_shared::audio::{CLIP_SAMPLES, FREQ_BINS, TIME_FRAMES};
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

/// The lowest and highest sample of each of `columns` equal stretches.
pub fn envelope(samples: &[f32], columns: usize) -> Vec<(f32, f32)> {
    if samples.is_empty() || columns == 0 {
        return Vec::new();
    }
    (0..columns)
        .map(|c| {
            let from = c * samples.len() / columns;
            let to = ((c + 1) * samples.len() / columns)
                .max(from + 1)
                .min(samples.len());
            samples[from..to]
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)))
        })
        .collect()
}

/// The waveform across the canvas, the window the network hears shaded.
pub fn waveform(canvas: &HtmlCanvasElement, samples: &[f32], window_start: usize) {
    let Some(context) = context_2d(canvas) else {
        return;
    };
    let (width, height) = (canvas.width() as f64, canvas.height() as f64);
    context.clear_rect(0.0, 0.0, width, height);
    if samples.is_empty() {
        return;
    }
    let total = samples.len() as f64;
    let x_of = |sample: usize| sample as f64 / total * width;
    let window_end = (window_start + CLIP_SAMPLES).min(samples.len());
    context.set_fill_style_str("#dbe8ff");
    context.fill_rect(
        x_of(window_start),
        0.0,
        (x_of(window_end) - x_of(window_start)).max(1.0),
        height,
    );
    context.set_fill_style_str("#1f3a93");
    for (x, (lo, hi)) in envelope(samples, width as usize).into_iter().enumerate() {
        let top = (1.0 - f64::from(hi.clamp(-1.0, 1.0))) / 2.0 * height;
        let bottom = (1.0 - f64::from(lo.clamp(-1.0, 1.0))) / 2.0 * height;
        context.fill_rect(x as f64, top, 1.0, (bottom - top).max(1.0));
    }
}

/// The spectrogram (frequency-major, `FREQ_BINS x TIME_FRAMES`) as an image: time to the right, low
/// frequencies at the bottom, quiet dark and loud bright.
pub fn spectrogram(canvas: &HtmlCanvasElement, values: &[f32]) {
    let Some(context) = context_2d(canvas) else {
        return;
    };
    if values.len() != FREQ_BINS * TIME_FRAMES {
        return;
    }
    canvas.set_width(TIME_FRAMES as u32);
    canvas.set_height(FREQ_BINS as u32);
    let rgba = spectrogram_rgba(values);
    if let Ok(image) = ImageData::new_with_u8_clamped_array_and_sh(
        Clamped(&rgba),
        TIME_FRAMES as u32,
        FREQ_BINS as u32,
    ) {
        let _ = context.put_image_data(&image, 0.0, 0.0);
    }
}

/// RGBA pixels of the spectrogram, row by row from the highest frequency down.
pub fn spectrogram_rgba(values: &[f32]) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-6);
    let mut rgba = Vec::with_capacity(values.len() * 4);
    for row in (0..FREQ_BINS).rev() {
        for &v in &values[row * TIME_FRAMES..(row + 1) * TIME_FRAMES] {
            let t = (v - lo) / span;
            // Dark blue through violet to warm yellow.
            rgba.extend_from_slice(&[
                (255.0 * t.powf(0.8)) as u8,
                (220.0 * t * t) as u8,
                (80.0 + 100.0 * (1.0 - t) * t * 4.0).min(255.0) as u8,
                255,
            ]);
        }
    }
    rgba
}

fn context_2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok().flatten()?.dyn_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_holds_each_stretchs_extremes() {
        let samples = [0.0, 1.0, -0.5, 0.25, -1.0, 0.5];
        assert_eq!(
            envelope(&samples, 3),
            vec![(0.0, 1.0), (-0.5, 0.25), (-1.0, 0.5)]
        );
        // More columns than samples repeat samples rather than leave gaps.
        assert_eq!(envelope(&samples[..2], 4).len(), 4);
        assert!(envelope(&[], 4).is_empty());
    }

    #[test]
    fn the_spectrogram_image_puts_low_frequencies_at_the_bottom() {
        let mut values = vec![0.0f32; FREQ_BINS * TIME_FRAMES];
        values[..TIME_FRAMES].fill(1.0); // the lowest frequency bin, loud
        let rgba = spectrogram_rgba(&values);
        let last_row = (FREQ_BINS - 1) * TIME_FRAMES * 4;
        assert_eq!(
            rgba[last_row], 255,
            "the lowest bin is bright, at the bottom"
        );
        assert_eq!(rgba[0], 0, "the top is dark");
    }
}
