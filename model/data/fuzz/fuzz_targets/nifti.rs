//! NIfTI-1/2 (plain or gzip) from arbitrary bytes: an error or a volume, never a panic or an
//! allocation beyond the declared-size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = medseg_data::nifti::read_bytes(Path::new("fuzz.nii"), data, 0) {
        let [x, y, z] = v.geometry.dims;
        assert_eq!(v.voxels.len(), x * y * z * v.channels);
        let _ = v.geometry.orientation();
    }
});
