//! Images and label maps with their geometry, and the format-sniffing entry points.

use crate::error::{DataError, Result};
use crate::geometry::Geometry;
use crate::nifti::NiftiHeader;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    #[serde(rename = "NIfTI-1")]
    Nifti1,
    #[serde(rename = "NIfTI-2")]
    Nifti2,
    #[serde(rename = "DICOM")]
    Dicom,
    #[serde(rename = "PNG")]
    Png,
    #[serde(rename = "JPEG")]
    Jpeg,
    #[serde(rename = "BMP")]
    Bmp,
    #[serde(rename = "TIFF")]
    Tiff,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("plain enum");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

/// What a volume was read from, kept so a mask can be written back with the source's header.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    /// The stored sample type, e.g. "int16", "uint8 RGB".
    pub datatype: String,
    /// DICOM Modality or a guess from the format ("CT", "MR", "RGB", ...), when known.
    pub modality: Option<String>,
    /// The NIfTI header as read, for writing masks with the same geometry fields.
    pub nifti: Option<NiftiHeader>,
    /// Things a reader had to repair or choose (e.g. "pixdim[1] was negative; used its magnitude").
    pub notes: Vec<String>,
}

/// An image (1 or 3 channels) on a voxel grid; 2-D images have depth 1.
#[derive(Clone, Debug)]
pub struct Volume {
    pub geometry: Geometry,
    pub channels: usize,
    /// Intensities after the format's scaling (NIfTI scl_slope/inter, DICOM rescale → HU), laid
    /// out x fastest, then y, then z, channels interleaved.
    pub voxels: Vec<f32>,
    pub source: Source,
}

impl Volume {
    pub fn dims(&self) -> [usize; 3] {
        self.geometry.dims
    }

    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        let [nx, ny, _] = self.geometry.dims;
        (z * ny + y) * nx + x
    }

    /// Minimum and maximum intensity, ignoring non-finite values (None when there is none).
    pub fn intensity_range(&self) -> Option<(f32, f32)> {
        let mut r: Option<(f32, f32)> = None;
        for &v in self.voxels.iter().filter(|v| v.is_finite()) {
            r = Some(match r {
                None => (v, v),
                Some((lo, hi)) => (lo.min(v), hi.max(v)),
            });
        }
        r
    }
}

/// Integer labels on a voxel grid (0 = background).
#[derive(Clone, Debug)]
pub struct LabelMap {
    pub geometry: Geometry,
    pub labels: Vec<u16>,
    /// The NIfTI header the labels came with or should be written with.
    pub nifti: Option<NiftiHeader>,
}

impl LabelMap {
    pub fn new(geometry: Geometry) -> Self {
        let n = geometry.voxel_count();
        LabelMap {
            geometry,
            labels: vec![0; n],
            nifti: None,
        }
    }

    /// A label map on the grid of `image`, keeping its header for export.
    pub fn for_image(image: &Volume) -> Self {
        let mut m = LabelMap::new(image.geometry.clone());
        m.nifti = image.source.nifti.clone();
        m
    }

    pub fn max_label(&self) -> u16 {
        self.labels.iter().copied().max().unwrap_or(0)
    }

    /// Labels present other than 0, ascending.
    pub fn foreground_labels(&self) -> Vec<u16> {
        let mut seen = vec![false; self.max_label() as usize + 1];
        for &l in &self.labels {
            seen[l as usize] = true;
        }
        (1..seen.len())
            .filter(|&l| seen[l])
            .map(|l| l as u16)
            .collect()
    }

    /// Voxels of `label` as a boolean mask.
    pub fn mask_of(&self, label: u16) -> Vec<bool> {
        self.labels.iter().map(|&l| l == label).collect()
    }
}

/// The kinds of file `load` recognises from their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    Nifti,
    Gzip,
    Dicom,
    Raster(Format),
    Unknown,
}

pub fn sniff(head: &[u8]) -> Sniffed {
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Sniffed::Gzip;
    }
    if head.len() >= 4 {
        let le = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let be = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if [348, 540].contains(&le) || [348, 540].contains(&be) {
            return Sniffed::Nifti;
        }
    }
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Sniffed::Dicom;
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::Raster(Format::Png);
    }
    if head.starts_with(&[0xff, 0xd8, 0xff]) {
        return Sniffed::Raster(Format::Jpeg);
    }
    if head.starts_with(b"BM") {
        return Sniffed::Raster(Format::Bmp);
    }
    if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        return Sniffed::Raster(Format::Tiff);
    }
    Sniffed::Unknown
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::Invalid(format!(
            "{}: not a regular file (a device or pipe)",
            path.display()
        )));
    }
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = Vec::with_capacity(132);
    f.by_ref()
        .take(132)
        .read_to_end(&mut head)
        .map_err(|e| DataError::io(path, e))?;
    Ok(head)
}

/// Opens an image or volume: a NIfTI, DICOM or raster file, or a folder holding one DICOM series
/// (with several series, the one with the most slices; see [`crate::dicom::list_series`]).
pub fn load(path: &Path) -> Result<Volume> {
    if path.is_dir() {
        return crate::dicom::load_series(path, None);
    }
    let head = read_head(path)?;
    match sniff(&head) {
        Sniffed::Nifti | Sniffed::Gzip => crate::nifti::read(path),
        Sniffed::Dicom => crate::dicom::load_file(path),
        Sniffed::Raster(f) => crate::raster::read_image(path, f),
        Sniffed::Unknown => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if head.is_empty() {
                Err(DataError::malformed(path, "file", "the file is empty"))
            } else if ext == "dcm" {
                // DICOM without the 128-byte preamble.
                crate::dicom::load_file(path)
            } else if ext == "nii" {
                // Named NIfTI but not recognised: let the NIfTI reader say what is wrong.
                crate::nifti::read(path)
            } else {
                Err(DataError::UnknownFormat {
                    path: path.to_path_buf(),
                })
            }
        }
    }
}

/// Opens an image or volume held in memory (a browser upload, a fuzz input): NIfTI (optionally
/// gzip), DICOM or raster; `name` is used in messages and for the `.dcm` hint only.
pub fn load_bytes(name: &Path, bytes: &[u8]) -> Result<Volume> {
    match sniff(bytes) {
        Sniffed::Nifti | Sniffed::Gzip => crate::nifti::read_bytes(name, bytes, 0),
        Sniffed::Dicom => crate::dicom::load_bytes(name, bytes),
        Sniffed::Raster(f) => crate::raster::read_image_bytes(name, bytes, f),
        Sniffed::Unknown if bytes.is_empty() => {
            Err(DataError::malformed(name, "file", "the file is empty"))
        }
        Sniffed::Unknown
            if name
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("dcm")) =>
        {
            crate::dicom::load_bytes(name, bytes)
        }
        Sniffed::Unknown
            if name
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("nii")) =>
        {
            crate::nifti::read_bytes(name, bytes, 0)
        }
        Sniffed::Unknown => Err(DataError::UnknownFormat {
            path: name.to_path_buf(),
        }),
    }
}

/// Opens a mask or label map: NIfTI (integer values), PNG/BMP/TIFF (0/255 binary masks become
/// label 1; other grey values and 16-bit ids are kept as labels).
pub fn load_labels(path: &Path) -> Result<LabelMap> {
    let head = read_head(path)?;
    match sniff(&head) {
        Sniffed::Nifti | Sniffed::Gzip => {
            let v = crate::nifti::read(path)?;
            labels_from_volume(v)
        }
        Sniffed::Raster(f) => crate::raster::read_labels(path, f),
        Sniffed::Dicom => Err(DataError::unsupported(
            path,
            "DICOM",
            "DICOM SEG label maps",
        )),
        Sniffed::Unknown if head.is_empty() => {
            Err(DataError::malformed(path, "file", "the file is empty"))
        }
        Sniffed::Unknown => Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// As [`load_labels`], from bytes held in memory (a browser upload, a bundled sample).
pub fn load_labels_bytes(name: &Path, bytes: &[u8]) -> Result<LabelMap> {
    match sniff(bytes) {
        Sniffed::Nifti | Sniffed::Gzip => {
            labels_from_volume(crate::nifti::read_bytes(name, bytes, 0)?)
        }
        Sniffed::Raster(f) => crate::raster::read_labels_bytes(name, bytes, f),
        Sniffed::Dicom => Err(DataError::unsupported(
            name,
            "DICOM",
            "DICOM SEG label maps",
        )),
        Sniffed::Unknown if bytes.is_empty() => {
            Err(DataError::malformed(name, "file", "the file is empty"))
        }
        Sniffed::Unknown => Err(DataError::UnknownFormat {
            path: name.to_path_buf(),
        }),
    }
}

fn labels_from_volume(v: Volume) -> Result<LabelMap> {
    let path = v.source.path.clone();
    if v.channels != 1 {
        return Err(DataError::malformed(
            &path,
            "label map",
            "a label map must have one channel, this has RGB samples",
        ));
    }
    let mut labels = Vec::with_capacity(v.voxels.len());
    for (i, &x) in v.voxels.iter().enumerate() {
        let r = x.round();
        if !x.is_finite() || (x - r).abs() > 1e-3 || !(0.0..=65535.0).contains(&r) {
            return Err(DataError::malformed(
                &path,
                "label map",
                format!("voxel {i} holds {x}, not an integer label in 0..=65535"),
            ));
        }
        labels.push(r as u16);
    }
    Ok(LabelMap {
        geometry: v.geometry,
        labels,
        nifti: v.source.nifti,
    })
}

/// How a mask file becomes labels for training and evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskOptions {
    /// Binarise: foreground where the value passes this fraction of the file's full scale (255
    /// for 8-bit images, 65535 for 16-bit; NIfTI values as stored). Colour is averaged first.
    /// Needed for masks stored lossily (JPEG); off by default.
    pub threshold: Option<f64>,
    /// More distinct foreground values than this is refused (an image passed as a mask, a
    /// noisy mask), unless thresholded.
    pub max_labels: usize,
}

impl Default for MaskOptions {
    fn default() -> Self {
        MaskOptions {
            threshold: None,
            max_labels: 255,
        }
    }
}

/// Opens a mask by `opts`: thresholded when asked, else as [`load_labels`] with at most
/// `max_labels` distinct foreground values.
pub fn load_mask(path: &Path, opts: &MaskOptions) -> Result<LabelMap> {
    let Some(t) = opts.threshold else {
        let labels = load_labels(path)?;
        let n = labels.foreground_labels().len();
        if n > opts.max_labels {
            return Err(DataError::Invalid(format!(
                "{}: holds {n} distinct label values, more than the {} a mask may have; is it an image rather than a mask? Pass --threshold to binarise it, or --max-labels to allow more",
                path.display(),
                opts.max_labels
            )));
        }
        return Ok(labels);
    };
    if !(0.0..1.0).contains(&t) {
        return Err(DataError::Invalid(format!(
            "the mask threshold is {t}; it is a fraction of full scale in [0, 1)"
        )));
    }
    let v = load(path)?;
    let full = match v.source.format {
        Format::Nifti1 | Format::Nifti2 | Format::Dicom => 1.0,
        _ if v.source.datatype.starts_with("uint16") => 65535.0,
        _ if v.source.datatype.starts_with("float") => 1.0,
        _ => 255.0,
    };
    let cut = (t * full) as f32;
    let c = v.channels.max(1);
    let labels = v
        .voxels
        .chunks_exact(c)
        .map(|px| (px.iter().sum::<f32>() / c as f32 > cut) as u16)
        .collect();
    Ok(LabelMap {
        geometry: v.geometry,
        labels,
        nifti: v.source.nifti,
    })
}
