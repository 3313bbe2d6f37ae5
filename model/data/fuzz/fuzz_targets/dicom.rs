//! A DICOM file from arbitrary bytes: an error or a volume, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Loads run under this memory budget; nothing decoded may pass it, and libFuzzer's
/// -malloc_limit_mb (scripts/fuzz-smoke.sh) fails any single allocation over 512 MiB.
const BUDGET: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    medseg_data::budget::with_budget(BUDGET, || check(data));
});

fn check(data: &[u8]) {
    if let Ok(v) = medseg_data::dicom::load_bytes(Path::new("fuzz.dcm"), data) {
        let [x, y, z] = v.geometry.dims;
        assert_eq!(v.voxels.len(), x * y * z * v.channels);
        assert!(v.voxels.len() as u64 * 4 <= BUDGET, "decoded past the budget");
    }
}
