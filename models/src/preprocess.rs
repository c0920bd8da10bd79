//! Image preprocessing for the image encoder, as IC-GAN prepares images for its SwAV feature extractor:
//! centre crop to a square along the long edge, resize to the encoder's input size (224 for SwAV's ResNet-50;
//! the default model's encoder reads 64), bilinear, scale to [0, 1], ImageNet mean/std.

use image::{DynamicImage, imageops::FilterType};
use thiserror::Error;

pub use crate::image_encoder::{IMAGENET_MEAN as MEAN, IMAGENET_STD as STD};

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("the image input is empty (0 bytes)")]
    Empty,
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("the image has no pixels")]
    NoPixels,
}

/// Decodes an image file (PNG, JPEG, ...) to a normalised `3 x size x size` tensor, channel-major.
pub fn preprocess_image_bytes(bytes: &[u8], size: usize) -> Result<Vec<f32>, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let image = image::load_from_memory(bytes).map_err(|e| ImageError::Decode(e.to_string()))?;
    preprocess_image(&image, size)
}

pub fn preprocess_image(image: &DynamicImage, size: usize) -> Result<Vec<f32>, ImageError> {
    let mut out = unit_pixels(image, size)?;
    normalise_unit_pixels(&mut out);
    Ok(out)
}

/// The centre square, resized to `size` (bilinear), as channel-major `3 x size x size` values in [0, 1].
pub fn unit_pixels(image: &DynamicImage, size: usize) -> Result<Vec<f32>, ImageError> {
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return Err(ImageError::NoPixels);
    }
    let side = w.min(h);
    let cropped = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let resized = cropped
        .resize_exact(size as u32, size as u32, FilterType::Triangle)
        .to_rgb8();
    let mut out = vec![0.0f32; 3 * size * size];
    for (x, y, pixel) in resized.enumerate_pixels() {
        for c in 0..3 {
            out[(c * size + y as usize) * size + x as usize] = f32::from(pixel[c]) / 255.0;
        }
    }
    Ok(out)
}

/// ImageNet mean/std normalisation of channel-major `3 x H x W` pixels in [0, 1], in place.
pub fn normalise_unit_pixels(chw: &mut [f32]) {
    let plane = chw.len() / 3;
    for (c, channel) in chw.chunks_mut(plane.max(1)).enumerate().take(3) {
        for v in channel {
            *v = (*v - MEAN[c]) / STD[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_encoder::SWAV_INPUT_SIZE;

    #[test]
    fn crops_the_long_edge_and_normalises() {
        // A 300 x 100 image: white centre third, black elsewhere; the square crop keeps only white.
        let mut img = image::RgbImage::new(300, 100);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if (100..200).contains(&x) {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([0, 0, 0])
            };
        }
        let out = preprocess_image(&DynamicImage::ImageRgb8(img), SWAV_INPUT_SIZE).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        for c in 0..3 {
            let expected = (1.0 - MEAN[c]) / STD[c];
            assert!((out[c * 224 * 224 + 5] - expected).abs() < 1e-5);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            preprocess_image_bytes(b"not an image", SWAV_INPUT_SIZE),
            Err(ImageError::Decode(_))
        ));
        assert!(matches!(
            preprocess_image_bytes(b"", SWAV_INPUT_SIZE),
            Err(ImageError::Empty)
        ));
    }
}
