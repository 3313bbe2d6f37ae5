//! NIfTI: round trips, every datatype in both byte orders and both versions, scaling, qform,
//! 4-D volumes, header-preserving mask export, and the real volumes of ../shared/data.

use crate::shared_data;
use medseg_data::geometry::{quatern_to_affine, Geometry, Mat4};
use medseg_data::nifti::{self, DataType, NiftiHeader};
use medseg_data::preprocess::SeededRng;
use medseg_data::{load, load_labels, save_labels, DataError, LabelMap};

fn assert_affine_close(a: &Mat4, b: &Mat4, tol: f64, what: &str) {
    for i in 0..3 {
        for j in 0..4 {
            assert!(
                (a[i][j] - b[i][j]).abs() < tol,
                "{what} [{i}][{j}]: {} vs {}",
                a[i][j],
                b[i][j]
            );
        }
    }
}

/// An oblique, left-handed affine whose entries are exact in f32 (so NIfTI-1 stores them exactly).
fn oblique() -> Mat4 {
    [
        [0.0, -0.75, 0.0, 12.5],
        [0.5, 0.0, 0.0, -40.25],
        [0.0, 0.0, -2.5, 7.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[test]
fn label_round_trip_keeps_voxels_and_affine() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::from_affine([7, 5, 3], oblique());
    let mut rng = SeededRng::new(3);
    for (name, max) in [("a.nii", 9u16), ("b.nii.gz", 9), ("c.nii.gz", 900)] {
        let mut labels = LabelMap::new(geometry.clone());
        for l in labels.labels.iter_mut() {
            *l = (rng.next_f64() * (max as f64 + 1.0)) as u16;
        }
        let path = dir.path().join(name);
        save_labels(&path, &labels, false).unwrap();
        let back = load_labels(&path).unwrap();
        assert_eq!(back.labels, labels.labels, "{name}");
        assert_eq!(
            back.geometry.world_from_voxel, geometry.world_from_voxel,
            "{name}"
        );
        assert_eq!(back.geometry.dims, geometry.dims);
        let h = back.nifti.unwrap();
        assert_eq!(
            h.datatype,
            if max > 255 { 512 } else { 2 },
            "{name}: uint8 when labels fit"
        );
        assert_eq!((h.sform_code, h.qform_code), (1, 1));
        // The qform written beside the sform describes the same grid.
        let q = quatern_to_affine(
            h.quatern[0],
            h.quatern[1],
            h.quatern[2],
            h.qoffset,
            [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
            h.pixdim[0],
        );
        assert_affine_close(&q, &geometry.world_from_voxel, 1e-5, "qform");
    }
}

#[test]
fn existing_files_are_not_overwritten_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nii.gz");
    let mut labels = LabelMap::new(Geometry::axis_aligned([3, 3, 1], [1.0; 3]));
    labels.labels[4] = 1;
    save_labels(&path, &labels, false).unwrap();
    let before = std::fs::read(&path).unwrap();
    labels.labels[4] = 2;
    match save_labels(&path, &labels, false) {
        Err(DataError::Exists { .. }) => {}
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is untouched"
    );
    save_labels(&path, &labels, true).unwrap();
    assert_eq!(load_labels(&path).unwrap().labels[4], 2);
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn every_datatype_in_both_byte_orders_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::from_affine([4, 3, 2], oblique());
    let types = [
        (DataType::U8, 0.0, 255.0),
        (DataType::I8, -128.0, 127.0),
        (DataType::I16, -32768.0, 32767.0),
        (DataType::U16, 0.0, 65535.0),
        (DataType::I32, -1e6, 1e6),
        (DataType::U32, 0.0, 4e6),
        (DataType::I64, -1e6, 1e6),
        (DataType::U64, 0.0, 1e6),
        (DataType::F32, -1000.5, 1000.25),
        (DataType::F64, -1e-3, 1e-3),
    ];
    for (k, (dt, lo, hi)) in types.into_iter().enumerate() {
        for version in [1u8, 2] {
            for le in [true, false] {
                let mut h = NiftiHeader::for_geometry(&geometry, dt);
                h.version = version;
                h.little_endian = le;
                let n = 24;
                let values: Vec<f64> = (0..n)
                    .map(|i| {
                        let v = lo + (hi - lo) * i as f64 / (n - 1) as f64;
                        if matches!(dt, DataType::F32 | DataType::F64) {
                            v
                        } else {
                            v.round()
                        }
                    })
                    .collect();
                let path = dir.path().join(format!("t{k}_{version}_{le}.nii"));
                nifti::write_samples(&path, &h, &values, dt, false).unwrap();
                let v = load(&path).unwrap();
                assert_eq!(v.geometry.dims, [4, 3, 2]);
                assert_eq!(
                    v.geometry.world_from_voxel, geometry.world_from_voxel,
                    "{dt:?} v{version} le={le}"
                );
                assert_eq!(v.source.datatype, dt.name());
                for (a, b) in v.voxels.iter().zip(&values) {
                    assert_eq!(*a, *b as f32, "{dt:?} v{version} le={le}");
                }
            }
        }
    }
}

#[test]
fn rgb24_is_three_channels() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::axis_aligned([2, 2, 1], [0.5, 0.5, 1.0]);
    let h = NiftiHeader::for_geometry(&geometry, DataType::Rgb24);
    let path = dir.path().join("rgb.nii");
    // RGB24 is written as bytes: 12 samples for 4 voxels.
    let mut raw = h.clone();
    raw.datatype = DataType::Rgb24.code();
    let samples: Vec<f64> = (0..12).map(|i| (i * 20) as f64).collect();
    // write as U8 bytes then patch the datatype through a second header write
    nifti::write_samples(&path, &raw, &samples, DataType::U8, false).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[70..72].copy_from_slice(&128i16.to_le_bytes());
    bytes[72..74].copy_from_slice(&24i16.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let v = load(&path).unwrap();
    assert_eq!(v.channels, 3);
    assert_eq!(
        v.voxels,
        samples.iter().map(|&s| s as f32).collect::<Vec<_>>()
    );
}

#[test]
fn scl_slope_and_inter_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::axis_aligned([3, 1, 1], [1.0; 3]);
    let mut h = NiftiHeader::for_geometry(&geometry, DataType::I16);
    h.scl_slope = 2.0;
    h.scl_inter = -1024.0;
    let path = dir.path().join("s.nii");
    nifti::write_samples(&path, &h, &[0.0, 512.0, 1000.0], DataType::I16, false).unwrap();
    assert_eq!(load(&path).unwrap().voxels, vec![-1024.0, 0.0, 976.0]);
    // Slope 0 means "no scaling" in the standard.
    h.scl_slope = 0.0;
    let path = dir.path().join("s0.nii");
    nifti::write_samples(&path, &h, &[0.0, 512.0, 1000.0], DataType::I16, false).unwrap();
    assert_eq!(load(&path).unwrap().voxels, vec![0.0, 512.0, 1000.0]);
    // A valid slope with a NaN intercept: the intercept counts as 0; a NaN slope means none.
    h.scl_slope = 2.0;
    h.scl_inter = f64::NAN;
    let path = dir.path().join("snan.nii");
    nifti::write_samples(&path, &h, &[0.0, 512.0, 1000.0], DataType::I16, false).unwrap();
    assert_eq!(load(&path).unwrap().voxels, vec![0.0, 1024.0, 2000.0]);
    h.scl_slope = f64::NAN;
    h.scl_inter = 5.0;
    let path = dir.path().join("nanslope.nii");
    nifti::write_samples(&path, &h, &[0.0, 512.0, 1000.0], DataType::I16, false).unwrap();
    assert_eq!(load(&path).unwrap().voxels, vec![0.0, 512.0, 1000.0]);
}

#[test]
fn qform_is_used_without_sform_and_negative_pixdim_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::from_affine([2, 2, 2], oblique());
    let mut h = NiftiHeader::for_geometry(&geometry, DataType::U8);
    h.sform_code = 0;
    h.srow = [[0.0; 4]; 3];
    let expected = quatern_to_affine(
        h.quatern[0],
        h.quatern[1],
        h.quatern[2],
        h.qoffset,
        [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
        h.pixdim[0],
    );
    h.pixdim[2] = -h.pixdim[2];
    let path = dir.path().join("q.nii");
    nifti::write_samples(&path, &h, &[1.0; 8], DataType::U8, false).unwrap();
    let v = load(&path).unwrap();
    assert_affine_close(
        &v.geometry.world_from_voxel,
        &expected,
        1e-5,
        "qform-only affine",
    );
    assert!((v.geometry.spacing_mm[1] - 0.75).abs() < 1e-6);
    assert!(
        v.source.notes.iter().any(|n| n.contains("pixdim[2]")),
        "{:?}",
        v.source.notes
    );
    // Neither form: pixdim scaling.
    h.qform_code = 0;
    h.pixdim[2] = 0.75;
    let path = dir.path().join("m1.nii");
    nifti::write_samples(&path, &h, &[1.0; 8], DataType::U8, false).unwrap();
    let v = load(&path).unwrap();
    assert_eq!(v.geometry.spacing_mm, [0.5, 0.75, 2.5]);
    assert_eq!(v.geometry.orientation(), "RAS");
}

#[test]
fn four_d_files_give_the_chosen_volume() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::axis_aligned([2, 2, 1], [1.0; 3]);
    let mut h = NiftiHeader::for_geometry(&geometry, DataType::I16);
    h.dim = [4, 2, 2, 1, 3, 1, 1, 1];
    let samples: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let path = dir.path().join("4d.nii.gz");
    nifti::write_samples(&path, &h, &samples, DataType::I16, false).unwrap();
    assert_eq!(
        nifti::read_volume(&path, 0).unwrap().voxels,
        vec![0.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        nifti::read_volume(&path, 2).unwrap().voxels,
        vec![8.0, 9.0, 10.0, 11.0]
    );
    let err = nifti::read_volume(&path, 3).unwrap_err().to_string();
    assert!(err.contains("volume 3 requested, the file has 3"), "{err}");
}

#[test]
fn mask_export_keeps_the_source_header() {
    let dir = tempfile::tempdir().unwrap();
    let ct = load(&shared_data().join("ct/images/ts_example_ct_a.nii.gz")).unwrap();
    let src = ct.source.nifti.clone().unwrap();
    let mut mask = LabelMap::for_image(&ct);
    for (i, l) in mask.labels.iter_mut().enumerate() {
        *l = (ct.voxels[i] > 200.0) as u16 * 3;
    }
    let path = dir.path().join("bone.nii.gz");
    save_labels(&path, &mask, false).unwrap();
    let back = load_labels(&path).unwrap();
    assert_eq!(back.labels, mask.labels);
    assert_eq!(back.geometry, ct.geometry);
    let h = back.nifti.unwrap();
    assert_eq!(h.dim, src.dim);
    assert_eq!(
        (h.qform_code, h.sform_code),
        (src.qform_code, src.sform_code)
    );
    assert_eq!(
        (h.quatern, h.qoffset, h.srow),
        (src.quatern, src.qoffset, src.srow)
    );
    assert_eq!(h.pixdim[..4], src.pixdim[..4]);
    assert_eq!(h.datatype, 2, "integer datatype");
    // Fields we do not interpret (description, units) come across unchanged.
    assert_eq!(h.raw[148..228], src.raw[148..228]);
    assert_eq!(h.xyzt_units, src.xyzt_units);
}

#[test]
fn real_volumes_have_the_documented_geometry() {
    let d = shared_data();
    let ct = load(&d.join("ct/images/ts_example_ct_a.nii.gz")).unwrap();
    assert_eq!(ct.geometry.dims, [122, 101, 30]);
    assert_eq!(ct.geometry.spacing_mm, [3.0, 3.0, 3.0]);
    assert_eq!(ct.geometry.orientation(), "RAS");
    assert!(
        (ct.geometry.world_from_voxel[0][3] - -177.95632935).abs() < 1e-5,
        "nibabel's x offset"
    );
    assert_eq!(ct.source.datatype, "int16");
    let (lo, hi) = ct.intensity_range().unwrap();
    assert!(
        (-1100.0..=-1000.0).contains(&lo),
        "air is about -1000 HU, min {lo}"
    );
    assert!(
        hi > 500.0 && hi < 3072.0,
        "bone/contrast above 500 HU, max {hi}"
    );
    let labels = load_labels(&d.join("ct/labels/ts_example_ct_a.nii.gz")).unwrap();
    assert!(labels.geometry.matches(&ct.geometry, 1e-4));
    assert!(
        labels.max_label() <= 13 && labels.foreground_labels().contains(&6),
        "liver (6) present"
    );

    let mr = load(&d.join("mri_abdomen/images/ts_example_mr.nii.gz")).unwrap();
    assert_eq!(mr.geometry.dims, [117, 91, 20]);
    // Affine and axis codes as nibabel reads them (sform code 2): x and y flipped.
    assert_eq!(mr.geometry.orientation(), "LPS");
    let want = [
        [-3.0, 0.0, 0.0, 168.59963989],
        [0.0, -3.0, 0.0, 166.35943604],
        [0.0, 0.0, 3.0, 28.98964119],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine_close(&mr.geometry.world_from_voxel, &want, 1e-5, "MR affine");
    for s in mr.geometry.spacing_mm {
        assert!((s - 3.0).abs() < 1e-3, "{:?}", mr.geometry.spacing_mm);
    }
    let la_dir = d.join("mri_cardiac_la/images");
    let mut n = 0;
    for e in std::fs::read_dir(&la_dir).unwrap() {
        let v = load(&e.unwrap().path()).unwrap();
        assert_eq!(v.geometry.spacing_mm, [0.625, 0.625, 0.625]);
        assert_eq!(v.source.datatype, "float32");
        n += 1;
    }
    assert_eq!(n, 6);
}
