//! PNG images and masks from arbitrary bytes: an error or an image, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medseg_data::{raster, Format};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.png");
    if let Ok(v) = raster::read_image_bytes(name, data, Format::Png) {
        let [x, y, z] = v.geometry.dims;
        assert_eq!(v.voxels.len(), x * y * z * v.channels);
    }
    let _ = raster::read_labels_bytes(name, data, Format::Png);
});
