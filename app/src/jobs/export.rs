//! Export: a label map as NIfTI with its image's header, or PNG (2-D).

use super::{JobError, Reporter};
use medseg_data::volume::LabelMap;
use std::path::Path;

/// The format a mask is exported in, from the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskFormat {
    Png,
    Nifti,
}

/// Checks that `path` names a format that can hold `labels` (a PNG holds one slice).
pub fn mask_format(path: &Path, labels: &LabelMap) -> Result<MaskFormat, JobError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let depth = labels.geometry.dims[2];
    if name.ends_with(".png") {
        if depth != 1 {
            return Err(JobError::Invalid(format!(
                "{}: a PNG holds one slice; this volume has {depth}; export it as .nii.gz",
                path.display()
            )));
        }
        Ok(MaskFormat::Png)
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Ok(MaskFormat::Nifti)
    } else {
        Err(JobError::Invalid(format!(
            "{}: choose a name ending in .nii.gz or .nii (NIfTI){}",
            path.display(),
            if depth == 1 { " or .png" } else { "" }
        )))
    }
}

/// Writes `labels` to `path` (atomically; an existing file only with `overwrite`). In the
/// browser the file is offered as a download named like `path`.
pub fn export_labels(
    path: &Path,
    labels: &LabelMap,
    overwrite: bool,
    r: &dyn Reporter,
) -> Result<(), JobError> {
    let format = mask_format(path, labels)?;
    r.progress("writing", None);
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (format, overwrite); // a download replaces nothing
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        super::browser_files::download(&name, &encode_labels(path, labels)?)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        match format {
            MaskFormat::Png => medseg_data::raster::write_png_labels(path, labels, overwrite)?,
            MaskFormat::Nifti => medseg_data::nifti::write_labels(path, labels, overwrite)?,
        }
        Ok(())
    }
}

/// The bytes of the file [`export_labels`] writes.
pub fn encode_labels(path: &Path, labels: &LabelMap) -> Result<Vec<u8>, JobError> {
    Ok(match mask_format(path, labels)? {
        MaskFormat::Png => medseg_data::raster::png_labels_bytes(path, labels)?,
        MaskFormat::Nifti => {
            let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
            medseg_data::nifti::labels_bytes(labels, gz)?
        }
    })
}
