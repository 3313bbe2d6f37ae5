//! 2-D raster files (PNG, JPEG, BMP, TIFF) as depth-1 volumes, masks in and out.

use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use crate::geometry::Geometry;
use crate::volume::{Format, LabelMap, Source, Volume};
use image::{DynamicImage, ImageError, ImageReader, Limits};
use std::path::Path;

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Png => "PNG",
        Format::Jpeg => "JPEG",
        Format::Bmp => "BMP",
        Format::Tiff => "TIFF",
        _ => "image",
    }
}

fn decode(path: &Path, bytes: &[u8], format: Format) -> Result<DynamicImage> {
    let name = format_name(format);
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    // The decoder refuses images whose buffers would pass this, before allocating them: at most
    // 4 GiB, and no more than compression could plausibly expand this file to (deflate tops out
    // near 1:1032), so a few bytes declaring a huge image cannot make us allocate it.
    let plausible = (bytes.len() as u64).saturating_mul(2048).max(64 << 20);
    let mut limits = Limits::default();
    limits.max_alloc = Some(crate::error::MAX_DECODED_BYTES.min(4 << 30).min(plausible));
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::malformed(path, name, "the file ends early (truncated)")
        }
        ImageError::IoError(e) => DataError::io(path, e),
        ImageError::Unsupported(u) => DataError::unsupported(path, name, u.to_string()),
        ImageError::Limits(l) => {
            DataError::malformed(path, name, format!("image too large to decode: {l}"))
        }
        other => DataError::malformed(path, name, other.to_string()),
    })
}

/// Reads a PNG/JPEG/BMP/TIFF image: grey stays one channel, colour becomes RGB (alpha dropped),
/// 16-bit samples keep their values.
pub fn read_image(path: &Path, format: Format) -> Result<Volume> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    read_image_bytes(path, &bytes, format)
}

/// As [`read_image`] from bytes in memory (`path` names them in messages).
pub fn read_image_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<Volume> {
    let img = decode(path, bytes, format)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (channels, datatype, voxels): (usize, &str, Vec<f32>) = match &img {
        DynamicImage::ImageLuma8(b) => (
            1,
            "uint8 grey",
            b.as_raw().iter().map(|&v| v as f32).collect(),
        ),
        DynamicImage::ImageLumaA8(_) => (
            1,
            "uint8 grey",
            img.to_luma8().as_raw().iter().map(|&v| v as f32).collect(),
        ),
        DynamicImage::ImageLuma16(b) => (
            1,
            "uint16 grey",
            b.as_raw().iter().map(|&v| v as f32).collect(),
        ),
        DynamicImage::ImageLumaA16(_) => (
            1,
            "uint16 grey",
            img.to_luma16().as_raw().iter().map(|&v| v as f32).collect(),
        ),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => (
            3,
            "uint16 RGB",
            img.to_rgb16().as_raw().iter().map(|&v| v as f32).collect(),
        ),
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            (3, "float32 RGB", img.to_rgb32f().into_raw())
        }
        _ => (
            3,
            "uint8 RGB",
            img.to_rgb8().as_raw().iter().map(|&v| v as f32).collect(),
        ),
    };
    Ok(Volume {
        geometry: Geometry::axis_aligned([w, h, 1], [1.0, 1.0, 1.0]),
        channels,
        voxels,
        source: Source {
            path: path.to_path_buf(),
            format,
            datatype: datatype.to_string(),
            modality: Some(if channels == 3 { "RGB" } else { "grey" }.to_string()),
            nifti: None,
            notes: vec!["2-D image: spacing taken as 1 mm".to_string()],
        },
    })
}

/// Reads a mask or label image. Values {0, 255} (or {0, 65535}) are a binary mask → labels 0/1;
/// anything else is kept as label ids. Colour images are accepted only when R = G = B.
pub fn read_labels(path: &Path, format: Format) -> Result<LabelMap> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    read_labels_bytes(path, &bytes, format)
}

/// As [`read_labels`] from bytes in memory.
pub fn read_labels_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<LabelMap> {
    let v = read_image_bytes(path, bytes, format)?;
    let name = format_name(format);
    let grey: Vec<f32> = if v.channels == 3 {
        let mut g = Vec::with_capacity(v.voxels.len() / 3);
        for (i, px) in v.voxels.chunks_exact(3).enumerate() {
            if px[0] != px[1] || px[1] != px[2] {
                return Err(DataError::malformed(
                    path,
                    name,
                    format!("a mask must be single-channel; pixel {i} has colour {px:?}"),
                ));
            }
            g.push(px[0]);
        }
        g
    } else {
        v.voxels
    };
    let full = if v.source.datatype.starts_with("uint16") {
        65535.0
    } else {
        255.0
    };
    let binary = grey.iter().all(|&x| x == 0.0 || x == full);
    let labels = grey
        .iter()
        .map(|&x| {
            if binary {
                (x > 0.0) as u16
            } else {
                x.clamp(0.0, 65535.0) as u16
            }
        })
        .collect();
    Ok(LabelMap {
        geometry: v.geometry,
        labels,
        nifti: None,
    })
}

/// Writes a 2-D label map as PNG: binary masks as 0/255, label ids as 8-bit (≤ 255) or 16-bit
/// grey. Never replaces an existing file unless `overwrite`.
pub fn write_png_labels(path: &Path, labels: &LabelMap, overwrite: bool) -> Result<()> {
    let [w, h, d] = labels.geometry.dims;
    if d != 1 {
        return Err(DataError::Invalid(format!(
            "{}: PNG holds one slice; this label map has {d} (export it as NIfTI)",
            path.display()
        )));
    }
    let max = labels.max_label();
    let img = if max <= 1 {
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(
                w as u32,
                h as u32,
                labels
                    .labels
                    .iter()
                    .map(|&l| if l > 0 { 255 } else { 0 })
                    .collect(),
            )
            .expect("buffer matches dims"),
        )
    } else if max <= 255 {
        DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(
                w as u32,
                h as u32,
                labels.labels.iter().map(|&l| l as u8).collect(),
            )
            .expect("buffer matches dims"),
        )
    } else {
        DynamicImage::ImageLuma16(
            image::ImageBuffer::from_raw(w as u32, h as u32, labels.labels.clone())
                .expect("buffer matches dims"),
        )
    };
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| DataError::Invalid(format!("{}: PNG encoding failed: {e}", path.display())))?;
    write_atomic(path, overwrite, |w| w.write_all(&bytes))
}
