//! Tests of the data layer (medseg-data): loaders, writers, metrics, preprocessing, sliding
//! windows, dataset folders, the malformed-file corpus and every file of ../shared/data.

// Tests compare matrices and grids element by element.
#![allow(clippy::needless_range_loop)]

mod dataset;
mod dicom;
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

/// Deterministic pseudo-random numbers in [0, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
