//! What `medseg info` reports about a file or folder.

use crate::dataset::Dataset;
use crate::dicom::list_series;
use crate::error::{DataError, Result};
use crate::geometry::Mat4;
use crate::volume::{load, Volume};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    pub path: String,
    pub format: String,
    pub dims: [usize; 3],
    pub channels: usize,
    /// Volumes along NIfTI's dim[4] (1 otherwise); the first is described.
    pub volumes: usize,
    pub datatype: String,
    pub modality: Option<String>,
    pub spacing_mm: [f64; 3],
    pub world_from_voxel: Mat4,
    pub orientation: String,
    /// After the format's scaling (HU for CT).
    pub intensity_min: Option<f32>,
    pub intensity_max: Option<f32>,
    pub notes: Vec<String>,
}

impl ImageInfo {
    pub fn of(volume: &Volume) -> Self {
        let range = volume.intensity_range();
        ImageInfo {
            path: volume.source.path.display().to_string(),
            format: volume.source.format.to_string(),
            dims: volume.geometry.dims,
            channels: volume.channels,
            volumes: volume
                .source
                .nifti
                .as_ref()
                .map(|h| {
                    if h.dim[0] >= 4 {
                        h.dim[4].max(1) as usize
                    } else {
                        1
                    }
                })
                .unwrap_or(1),
            datatype: volume.source.datatype.clone(),
            modality: volume.source.modality.clone(),
            spacing_mm: volume.geometry.spacing_mm,
            world_from_voxel: volume.geometry.world_from_voxel,
            orientation: volume.geometry.orientation(),
            intensity_min: range.map(|r| r.0),
            intensity_max: range.map(|r| r.1),
            notes: volume.source.notes.clone(),
        }
    }

    pub fn to_text(&self) -> String {
        let m = &self.world_from_voxel;
        let mut s = format!(
            "{}\n  format:       {}\n  dims:         {} × {} × {}{}{}\n  datatype:     {}\n",
            self.path,
            self.format,
            self.dims[0],
            self.dims[1],
            self.dims[2],
            if self.channels > 1 {
                format!(" × {} channels", self.channels)
            } else {
                String::new()
            },
            if self.volumes > 1 {
                format!(" (volume 1 of {})", self.volumes)
            } else {
                String::new()
            },
            self.datatype
        );
        if let Some(md) = &self.modality {
            s += &format!("  modality:     {md}\n");
        }
        s += &format!(
            "  spacing_mm:   {:.4} × {:.4} × {:.4}\n  orientation:  {}\n  world_from_voxel (RAS+ mm):\n",
            self.spacing_mm[0], self.spacing_mm[1], self.spacing_mm[2], self.orientation
        );
        for row in m {
            s += &format!(
                "    [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]\n",
                row[0], row[1], row[2], row[3]
            );
        }
        match (self.intensity_min, self.intensity_max) {
            (Some(lo), Some(hi)) => s += &format!("  intensity:    {lo} … {hi}\n"),
            _ => s += "  intensity:    no finite value\n",
        }
        for n in &self.notes {
            s += &format!("  note:         {n}\n");
        }
        s
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Info {
    Image(Box<ImageInfo>),
    /// A folder of DICOM files: each series, described.
    DicomFolder {
        path: String,
        series: Vec<SeriesDescription>,
        skipped_files: usize,
    },
    /// A training folder (images/ + masks/ or labels/).
    Dataset {
        path: String,
        pairs: usize,
        images_without_mask: usize,
        masks_without_image: usize,
        ignored: usize,
        warnings: Vec<String>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct SeriesDescription {
    pub uid: String,
    pub modality: String,
    pub description: String,
    pub files: usize,
    pub image: Option<ImageInfo>,
    pub error: Option<String>,
}

pub fn info(path: &Path) -> Result<Info> {
    if !path.is_dir() {
        return Ok(Info::Image(Box::new(ImageInfo::of(&load(path)?))));
    }
    if path.join("images").is_dir() {
        let d = Dataset::scan(path)?;
        return Ok(Info::Dataset {
            path: path.display().to_string(),
            pairs: d.pairs.len(),
            images_without_mask: d.images_without_mask.len(),
            masks_without_image: d.masks_without_image.len(),
            ignored: d.ignored.len(),
            warnings: d.warnings(),
        });
    }
    let scan = list_series(path)?;
    if scan.series.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: neither a DICOM folder (no image series among {} file(s)) nor a dataset folder (images/ + masks/)",
            path.display(),
            scan.skipped.len()
        )));
    }
    let series = scan
        .series
        .iter()
        .map(|s| {
            let loaded = crate::dicom::load_scanned_series(path, s, &mut |_, _| true);
            SeriesDescription {
                uid: s.uid.clone(),
                modality: s.modality.clone(),
                description: s.description.clone(),
                files: s.files.len(),
                image: loaded.as_ref().ok().map(ImageInfo::of),
                error: loaded.err().map(|e| e.to_string()),
            }
        })
        .collect();
    Ok(Info::DicomFolder {
        path: path.display().to_string(),
        series,
        skipped_files: scan.skipped.len(),
    })
}

impl Info {
    pub fn to_text(&self) -> String {
        match self {
            Info::Image(i) => i.to_text(),
            Info::DicomFolder {
                path,
                series,
                skipped_files,
            } => {
                let mut s = format!(
                    "{path}: DICOM folder, {} series ({skipped_files} other file(s) skipped)\n",
                    series.len()
                );
                for se in series {
                    s += &format!(
                        "series {} ({}, {:?}, {} files)\n",
                        se.uid, se.modality, se.description, se.files
                    );
                    match (&se.image, &se.error) {
                        (Some(i), _) => s += &i.to_text(),
                        (None, Some(e)) => s += &format!("  error: {e}\n"),
                        _ => {}
                    }
                }
                s
            }
            Info::Dataset {
                path,
                pairs,
                images_without_mask,
                masks_without_image,
                ignored,
                warnings,
            } => {
                let mut s = format!(
                    "{path}: dataset folder\n  pairs:               {pairs}\n  images without mask: {images_without_mask}\n  masks without image: {masks_without_image}\n  ignored files:       {ignored}\n"
                );
                for w in warnings.iter().take(20) {
                    s += &format!("  warning: {w}\n");
                }
                if warnings.len() > 20 {
                    s += &format!("  … and {} more warnings\n", warnings.len() - 20);
                }
                s
            }
        }
    }
}
