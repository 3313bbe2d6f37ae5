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

fn limit_error(path: &Path, name: &'static str, e: ImageError) -> DataError {
    match e {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::malformed(path, name, "the file ends early (truncated)")
        }
        ImageError::IoError(e) => DataError::io(path, e),
        ImageError::Unsupported(u) => DataError::unsupported(path, name, u.to_string()),
        ImageError::Limits(l) => {
            DataError::malformed(path, name, format!("image too large to decode: {l}"))
        }
        other => DataError::malformed(path, name, other.to_string()),
    }
}

/// A JPEG's entropy-coded data cannot hold the end-of-image marker (an 0xFF there is followed
/// by 0x00 or a restart marker), so a file with no FF D9 after its last start-of-scan was cut
/// short — which the decoder would otherwise fill in with grey without a word.
fn check_jpeg_end(path: &Path, bytes: &[u8]) -> Result<()> {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let ended = last_scan.is_some_and(|at| bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]));
    if ended {
        Ok(())
    } else {
        Err(DataError::malformed(
            path,
            "JPEG",
            "no end-of-image marker after the image data (the file was cut short)",
        ))
    }
}

fn decode(path: &Path, bytes: &[u8], format: Format) -> Result<DynamicImage> {
    let name = format_name(format);
    if format == Format::Jpeg {
        check_jpeg_end(path, bytes)?;
    }
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DataError::io(path, e))
    };
    // The decoded samples, a converted copy and the f32 copy are held at once: all must fit
    // the memory budget, checked from the header before anything is allocated.
    let decoder = reader()?
        .into_decoder()
        .map_err(|e| limit_error(path, name, e))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    crate::budget::check_axes(path, name, &[w as u64, h as u64])?;
    let stored = image::ImageDecoder::total_bytes(&decoder) as u128;
    crate::budget::check(
        path,
        "the decoded image and its float copy",
        &[
            Some(stored),
            Some(stored),
            crate::budget::product(&[w as u64, h as u64, 3, 4]),
        ],
    )?;
    drop(decoder);
    let mut reader = reader()?;
    // No more than compression could plausibly expand this file to (deflate tops out near
    // 1:1032), so a few bytes declaring a huge image cannot make the decoder allocate it.
    let plausible = (bytes.len() as u64).saturating_mul(2048).max(64 << 20);
    let mut limits = Limits::default();
    limits.max_alloc = Some(crate::budget::budget().min(plausible));
    reader.limits(limits);
    reader.decode().map_err(|e| limit_error(path, name, e))
}

/// Samples of a TIFF the general decoder does not take (grey float32/float64, signed or 32-bit
/// integers): one channel as f32, or RGB.
fn decode_tiff_samples(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, String, Vec<f32>)> {
    use tiff::decoder::{Decoder, DecodingResult, Limits as TiffLimits};
    let bad = |e: tiff::TiffError| DataError::malformed(path, "TIFF", e.to_string());
    let mut limits = TiffLimits::default();
    limits.decoding_buffer_size = crate::budget::budget().min(usize::MAX as u64) as usize;
    let mut d = Decoder::new(std::io::Cursor::new(bytes))
        .map_err(bad)?
        .with_limits(limits);
    let (w, h) = d.dimensions().map_err(bad)?;
    crate::budget::check_axes(path, "TIFF", &[w as u64, h as u64])?;
    let (channels, colour) = match d.colortype().map_err(bad)? {
        tiff::ColorType::Gray(_) => (1, "grey"),
        tiff::ColorType::RGB(_) => (3, "RGB"),
        other => {
            return Err(DataError::unsupported(
                path,
                "TIFF",
                format!("colour type {other:?}"),
            ))
        }
    };
    crate::budget::check(
        path,
        "the decoded image and its float copy",
        &[crate::budget::product(&[
            w as u64,
            h as u64,
            channels as u64,
            8 + 4,
        ])],
    )?;
    macro_rules! f32s {
        ($v:expr, $name:expr) => {
            (
                $name,
                $v.into_iter().map(|x| x as f32).collect::<Vec<f32>>(),
            )
        };
    }
    let (kind, samples) = match d.read_image().map_err(bad)? {
        DecodingResult::U8(v) => f32s!(v, "uint8"),
        DecodingResult::U16(v) => f32s!(v, "uint16"),
        DecodingResult::U32(v) => f32s!(v, "uint32"),
        DecodingResult::U64(v) => f32s!(v, "uint64"),
        DecodingResult::I8(v) => f32s!(v, "int8"),
        DecodingResult::I16(v) => f32s!(v, "int16"),
        DecodingResult::I32(v) => f32s!(v, "int32"),
        DecodingResult::I64(v) => f32s!(v, "int64"),
        DecodingResult::F16(v) => ("float16", v.into_iter().map(|x| x.to_f32()).collect()),
        DecodingResult::F32(v) => ("float32", v),
        DecodingResult::F64(v) => f32s!(v, "float64"),
    };
    let (w, h) = (w as usize, h as usize);
    if samples.len() != w * h * channels {
        return Err(DataError::malformed(
            path,
            "TIFF",
            format!(
                "{} samples decoded for a {w}×{h} image of {channels} channel(s)",
                samples.len()
            ),
        ));
    }
    Ok((w, h, channels, format!("{kind} {colour}"), samples))
}

/// Reads a PNG/JPEG/BMP/TIFF image: grey stays one channel, colour becomes RGB (alpha dropped),
/// 16-bit samples keep their values.
pub fn read_image(path: &Path, format: Format) -> Result<Volume> {
    let bytes = crate::budget::read_file(path)?;
    read_image_bytes(path, &bytes, format)
}

/// As [`read_image`] from bytes in memory (`path` names them in messages).
pub fn read_image_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<Volume> {
    let img = match decode(path, bytes, format) {
        Err(DataError::Unsupported { .. }) if format == Format::Tiff => {
            let (w, h, channels, datatype, voxels) = decode_tiff_samples(path, bytes)?;
            return Ok(volume_2d(path, format, w, h, channels, &datatype, voxels));
        }
        other => other?,
    };
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
    Ok(volume_2d(path, format, w, h, channels, datatype, voxels))
}

fn volume_2d(
    path: &Path,
    format: Format,
    w: usize,
    h: usize,
    channels: usize,
    datatype: &str,
    voxels: Vec<f32>,
) -> Volume {
    Volume {
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
    }
}

/// Reads a mask or label image. Values {0, 255} (or {0, 65535}) are a binary mask → labels 0/1;
/// anything else is kept as label ids. Colour images are accepted only when R = G = B.
pub fn read_labels(path: &Path, format: Format) -> Result<LabelMap> {
    let bytes = crate::budget::read_file(path)?;
    read_labels_bytes(path, &bytes, format)
}

/// As [`read_labels`] from bytes in memory.
pub fn read_labels_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<LabelMap> {
    if format == Format::Jpeg {
        return Err(DataError::malformed(
            path,
            "JPEG",
            "a mask stored as JPEG carries compression noise (the format is lossy), so its values are not labels; pass --threshold (e.g. 0.5) to binarise it, or store masks as PNG",
        ));
    }
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
    let bytes = png_labels_bytes(path, labels)?;
    write_atomic(path, overwrite, |w| w.write_all(&bytes))
}

/// [`write_png_labels`] into memory (`path` names the file in errors).
pub fn png_labels_bytes(path: &Path, labels: &LabelMap) -> Result<Vec<u8>> {
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
    Ok(bytes)
}
