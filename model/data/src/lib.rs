//! medseg's data layer, free of GPU code: medical image I/O with geometry (NIfTI-1/2, DICOM
//! series, PNG/JPEG/BMP/TIFF), masks in and out, dataset folders, preprocessing, sliding-window
//! inference over any model, and evaluation metrics in millimetres.

pub mod atomic;
pub mod budget;
pub mod dataset;
pub mod dicom;
mod dicom_scan;
pub mod error;
pub mod evaluate;
pub mod geometry;
pub mod info;
pub mod instances;
pub mod metrics;
pub mod nifti;
pub mod preprocess;
pub mod proposal;
pub mod raster;
pub mod sliding;
pub mod volume;

pub use error::{DataError, Result};
pub use geometry::Geometry;
pub use volume::{load, load_labels, load_mask, Format, LabelMap, MaskOptions, Source, Volume};

use std::path::Path;

/// Writes a label map in the format its extension names: `.nii`/`.nii.gz` (with the source
/// image's header) or `.png` (2-D). Never replaces an existing file unless `overwrite`.
pub fn save_labels(path: &Path, labels: &LabelMap, overwrite: bool) -> Result<()> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        nifti::write_labels(path, labels, overwrite)
    } else if name.ends_with(".png") {
        raster::write_png_labels(path, labels, overwrite)
    } else {
        Err(DataError::Invalid(format!(
            "{}: masks are saved as .nii, .nii.gz or .png",
            path.display()
        )))
    }
}
