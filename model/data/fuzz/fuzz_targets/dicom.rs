//! A DICOM file from arbitrary bytes: an error or a volume, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = medseg_data::dicom::load_bytes(Path::new("fuzz.dcm"), data) {
        let [x, y, z] = v.geometry.dims;
        assert_eq!(v.voxels.len(), x * y * z * v.channels);
    }
});
