//! PNG images and masks from arbitrary bytes: an error or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medseg_data::{raster, Format};
use std::path::Path;

/// Loads run under this memory budget; nothing decoded may pass it, and libFuzzer's
/// -malloc_limit_mb (scripts/fuzz-smoke.sh) fails any single allocation over 512 MiB.
const BUDGET: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    medseg_data::budget::with_budget(BUDGET, || check(data));
});

fn check(data: &[u8]) {
    let name = Path::new("fuzz.png");
    if let Ok(v) = raster::read_image_bytes(name, data, Format::Png) {
        let [x, y, z] = v.geometry.dims;
        assert_eq!(v.voxels.len(), x * y * z * v.channels);
        assert!(v.voxels.len() as u64 * 4 <= BUDGET, "decoded past the budget");
    }
    let _ = raster::read_labels_bytes(name, data, Format::Png);
}
