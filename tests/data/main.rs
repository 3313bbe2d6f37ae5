//! Tests of the data layer (medseg-data): loaders, writers, metrics, preprocessing, sliding
//! windows, dataset folders, the malformed-file corpus and every file of ../shared/data.

// Tests compare matrices and grids element by element.
#![allow(clippy::needless_range_loop)]

mod dataset;
mod dicom;
mod evaluate;
mod malformed;
mod metrics;
mod nifti;
mod preprocess;
mod raster;
mod shared_data;
mod sliding;

use std::path::PathBuf;

/// `../shared/data` beside the checkout.
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/malformed")
}
