//! Decoding the packages' pictures: SVG drawings, DirectDraw Surface textures (0 A.D.'s portraits), and what
//! the `image` crate reads (PNG, JPEG, WebP).

use anyhow::{Context, Result, bail};
use image::{DynamicImage, RgbaImage};

/// Side in pixels that SVG drawings are drawn at, on their longest side.
const SVG_SIDE: f32 = 256.0;

/// Decodes a picture, choosing the decoder by the file name's extension.
pub fn decode_picture(file_name: &str, bytes: &[u8]) -> Result<DynamicImage> {
    let lower = file_name.to_lowercase();
    if lower.ends_with(".svg") {
        draw_svg(bytes)
    } else if lower.ends_with(".dds") {
        decode_dds(bytes)
    } else {
        Ok(image::load_from_memory(bytes)?)
    }
}

/// An SVG drawn at [`SVG_SIDE`] on its longest side (text is left out: labels are not part of a scene).
fn draw_svg(bytes: &[u8]) -> Result<DynamicImage> {
    let tree = resvg::usvg::Tree::from_data(bytes, &resvg::usvg::Options::default())?;
    let size = tree.size();
    let scale = SVG_SIDE / size.width().max(size.height()).max(1.0);
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
    let buffer = RgbaImage::from_raw(w, h, rgba).context("an SVG's pixels")?;
    Ok(DynamicImage::ImageRgba8(buffer))
}

/// The DDS header: magic, then a 124-byte header whose pixel format names the block compression.
const DDS_MAGIC: &[u8; 4] = b"DDS ";
const DDS_HEADER_LEN: usize = 128;
const DDS_HEIGHT_AT: usize = 12;
const DDS_WIDTH_AT: usize = 16;
const DDS_FOURCC_AT: usize = 84;
/// Larger textures are not pictures of a thing.
const DDS_MAX_SIDE: usize = 4096;

/// texture2ddecoder's decoders of a whole texture of 4 x 4 blocks into BGRA pixels.
type BlockDecoder = fn(&[u8], usize, usize, &mut [u32]) -> Result<(), &'static str>;

/// The top mip level of a block-compressed DDS texture (DXT1, DXT3 or DXT5).
fn decode_dds(bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.len() < DDS_HEADER_LEN || &bytes[..4] != DDS_MAGIC {
        bail!("not a DDS texture");
    }
    let field =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (height, width) = (field(DDS_HEIGHT_AT) as usize, field(DDS_WIDTH_AT) as usize);
    if width == 0 || height == 0 || width > DDS_MAX_SIDE || height > DDS_MAX_SIDE {
        bail!("a DDS texture of {width}x{height}");
    }
    let fourcc = &bytes[DDS_FOURCC_AT..DDS_FOURCC_AT + 4];
    let (decode, block_bytes): (BlockDecoder, usize) = match fourcc {
        b"DXT1" => (texture2ddecoder::decode_bc1, 8),
        b"DXT3" => (texture2ddecoder::decode_bc2, 16),
        b"DXT5" => (texture2ddecoder::decode_bc3, 16),
        other => bail!(
            "a DDS texture in {} (DXT1, DXT3 and DXT5 are read)",
            String::from_utf8_lossy(other)
        ),
    };
    let blocks = width.div_ceil(4) * height.div_ceil(4);
    let data = bytes
        .get(DDS_HEADER_LEN..DDS_HEADER_LEN + blocks * block_bytes)
        .context("a DDS texture shorter than its header says")?;
    let mut pixels = vec![0u32; width * height];
    decode(data, width, height, &mut pixels).map_err(anyhow::Error::msg)?;
    // The decoder writes BGRA in a little-endian u32.
    let rgba: Vec<u8> = pixels
        .iter()
        .flat_map(|p| {
            let [b, g, r, a] = p.to_le_bytes();
            [r, g, b, a]
        })
        .collect();
    let buffer =
        RgbaImage::from_raw(width as u32, height as u32, rgba).context("a DDS texture's pixels")?;
    Ok(DynamicImage::ImageRgba8(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DXT1 texture of 4x4 blocks whose colours are all `colour` (RGB565).
    fn dxt1(width: u32, height: u32, colour: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; DDS_HEADER_LEN];
        bytes[..4].copy_from_slice(DDS_MAGIC);
        bytes[DDS_HEIGHT_AT..DDS_HEIGHT_AT + 4].copy_from_slice(&height.to_le_bytes());
        bytes[DDS_WIDTH_AT..DDS_WIDTH_AT + 4].copy_from_slice(&width.to_le_bytes());
        bytes[DDS_FOURCC_AT..DDS_FOURCC_AT + 4].copy_from_slice(b"DXT1");
        for _ in 0..(width / 4) * (height / 4) {
            bytes.extend(colour.to_le_bytes());
            bytes.extend(colour.to_le_bytes());
            bytes.extend([0u8; 4]); // every pixel takes the first colour
        }
        bytes
    }

    #[test]
    fn a_dxt1_texture_decodes_to_its_colour() {
        let red = 0xF800; // RGB565: all red bits set
        let picture = decode_picture("fauna_cow.png.cached.dds", &dxt1(8, 4, red)).unwrap();
        let rgba = picture.to_rgba8();
        assert_eq!(rgba.dimensions(), (8, 4));
        assert_eq!(rgba.get_pixel(5, 3).0, [255, 0, 0, 255]);
    }

    #[test]
    fn truncated_or_foreign_textures_are_errors() {
        let mut short = dxt1(8, 8, 0);
        short.truncate(DDS_HEADER_LEN + 8);
        assert!(decode_picture("a.dds", &short).is_err());
        let mut foreign = dxt1(4, 4, 0);
        foreign[DDS_FOURCC_AT..DDS_FOURCC_AT + 4].copy_from_slice(b"ATI2");
        let error = decode_picture("a.dds", &foreign).unwrap_err();
        assert!(error.to_string().contains("ATI2"));
        assert!(decode_picture("a.dds", b"DDS ").is_err());
    }
}
