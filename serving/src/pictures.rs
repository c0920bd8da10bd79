//! The generator's output as pictures: `[-1, 1]` channel-major floats to RGB bytes, PNG files and JPEG previews. One place,
//! so the command-line tool and the service make the same bytes from the same output.

/// `3 x H x W` in [-1, 1] to interleaved RGB bytes, as `(x + 1) / 2` clamped and rounded.
pub fn to_rgb8(chw: &[f32], h: usize, w: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; 3 * h * w];
    for c in 0..3 {
        for p in 0..h * w {
            rgb[p * 3 + c] = ((chw[c * h * w + p].clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        }
    }
    rgb
}

/// PNG bytes of an interleaved RGB image.
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, String> {
    let buffer = image::RgbImage::from_raw(width as u32, height as u32, rgb.to_vec())
        .ok_or_else(|| format!("{} bytes are not a {width} x {height} RGB image", rgb.len()))?;
    let mut png = Vec::new();
    buffer
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("encoding PNG: {e}"))?;
    Ok(png)
}

/// JPEG bytes of an interleaved RGB image: previews, where size matters more than fidelity.
pub fn encode_jpeg(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, String> {
    let buffer = image::RgbImage::from_raw(width as u32, height as u32, rgb.to_vec())
        .ok_or_else(|| format!("{} bytes are not a {width} x {height} RGB image", rgb.len()))?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&buffer)
        .map_err(|e| format!("encoding JPEG: {e}"))?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_tanh_range_to_bytes_and_encodes() {
        // Two pixels: R channel -1 and 1, G 0 and 0.5, B beyond the range (clamped).
        let chw = [-1.0, 1.0, 0.0, 0.5, -3.0, 3.0];
        assert_eq!(to_rgb8(&chw, 1, 2), vec![0, 128, 0, 255, 191, 255]);
        let png = encode_png(&to_rgb8(&chw, 1, 2), 2, 1).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(encode_png(&[0; 5], 2, 1).is_err());
        let jpeg = encode_jpeg(&to_rgb8(&chw, 1, 2), 2, 1).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
        assert!(encode_jpeg(&[0; 5], 2, 1).is_err());
    }
}
