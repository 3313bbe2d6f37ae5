//! Open: an image, a volume or a DICOM folder, and label maps over it.

use super::{JobError, Reporter};
use medseg_data::volume::{LabelMap, Volume};
use std::path::Path;

/// Reads an image, volume or DICOM folder (the series with most slices), with progress per
/// DICOM slice.
pub fn open_image(path: &Path, r: &dyn Reporter) -> Result<Volume, JobError> {
    r.progress("reading", None);
    #[cfg(target_arch = "wasm32")]
    let v = medseg_data::volume::load_bytes(path, &super::browser_files::read(path)?)?;
    #[cfg(not(target_arch = "wasm32"))]
    let v = if path.is_dir() {
        medseg_data::dicom::load_series_with(path, None, &mut |done, total| {
            r.progress("reading slices", Some(done as f32 / total.max(1) as f32))
        })?
    } else {
        medseg_data::load(path)?
    };
    if r.cancelled() {
        return Err(JobError::Cancelled);
    }
    Ok(v)
}

/// Reads a mask or label map.
pub fn open_labels(path: &Path, r: &dyn Reporter) -> Result<LabelMap, JobError> {
    r.progress("reading", None);
    #[cfg(target_arch = "wasm32")]
    return Ok(medseg_data::volume::load_labels_bytes(
        path,
        &super::browser_files::read(path)?,
    )?);
    #[cfg(not(target_arch = "wasm32"))]
    Ok(medseg_data::load_labels(path)?)
}
