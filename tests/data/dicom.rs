//! DICOM series made here with known geometry: grouping by SeriesInstanceUID, sorting along the
//! slice normal whatever the file order, spacing from positions, rescale to HU, LPS → RAS,
//! multi-frame files, files that are not DICOM skipped and reported.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use medseg_data::dicom::{list_series, load_series};
use medseg_data::load;
use std::path::Path;

const ROWS: usize = 3;
const COLS: usize = 5;

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| format!("{v}")).collect())
}

fn base(series: &str, sop: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
    ));
    o.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(sop),
    ));
    o.put(DataElement::new(
        tags::MODALITY,
        VR::CS,
        PrimitiveValue::from("CT"),
    ));
    o.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(series),
    ));
    o.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    o.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("MONOCHROME2"),
    ));
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(ROWS as u16),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(COLS as u16),
    ));
    o.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        ds(&[0.8, 0.7]),
    ));
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    o.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    o.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(15u16),
    ));
    o.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    o.put(DataElement::new(
        tags::RESCALE_INTERCEPT,
        VR::DS,
        ds(&[-1024.0]),
    ));
    o.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, ds(&[2.0])));
    o
}

fn pixels(values: impl Iterator<Item = i16>) -> DataElement<InMemDicomObject> {
    let bytes: Vec<u8> = values.flat_map(|v| v.to_le_bytes()).collect();
    DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes))
}

fn write(o: InMemDicomObject, sop: &str, path: &Path) {
    let file = o
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                .media_storage_sop_instance_uid(sop),
        )
        .unwrap();
    file.write_to_file(path).unwrap();
}

/// Orientation: rows along +x (LPS), columns tilted 30° in the y–z plane.
fn orientation() -> [f64; 6] {
    let (s, c) = 30f64.to_radians().sin_cos();
    [1.0, 0.0, 0.0, 0.0, c, -s]
}

fn normal() -> [f64; 3] {
    let o = orientation();
    [
        o[1] * o[5] - o[2] * o[4],
        o[2] * o[3] - o[0] * o[5],
        o[0] * o[4] - o[1] * o[3],
    ]
}

const ORIGIN: [f64; 3] = [-100.0, 50.0, 20.0];
const STEP: f64 = 2.5;

fn stored(k: usize, y: usize, x: usize) -> i16 {
    (k * 100 + y * COLS + x) as i16
}

/// Writes a 4-slice series in shuffled file order, a 2-slice second series and a text file.
fn write_folder(dir: &Path) {
    let n = normal();
    for (file_no, k) in [2usize, 0, 3, 1].into_iter().enumerate() {
        let sop = format!("1.2.3.4.1.{k}");
        let mut o = base("1.2.3.4.1", &sop);
        let p: Vec<f64> = (0..3).map(|i| ORIGIN[i] + n[i] * STEP * k as f64).collect();
        o.put(DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            ds(&p),
        ));
        o.put(DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&orientation()),
        ));
        // Instance numbers deliberately disagree with the geometry.
        o.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from(format!("{}", 10 - file_no)),
        ));
        o.put(pixels(
            (0..ROWS).flat_map(|y| (0..COLS).map(move |x| stored(k, y, x))),
        ));
        write(o, &sop, &dir.join(format!("img{file_no}.dcm")));
    }
    for k in 0..2 {
        let sop = format!("1.2.3.4.2.{k}");
        let mut o = base("1.2.3.4.2", &sop);
        o.put(DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            ds(&[0.0, 0.0, k as f64 * 5.0]),
        ));
        o.put(DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        ));
        o.put(pixels(std::iter::repeat_n(7, ROWS * COLS)));
        std::fs::create_dir_all(dir.join("other")).unwrap();
        write(o, &sop, &dir.join(format!("other/b{k}")));
    }
    std::fs::write(dir.join("README.txt"), "not dicom").unwrap();
}

#[test]
fn series_are_grouped_sorted_and_placed_in_ras() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let scan = list_series(dir.path()).unwrap();
    assert_eq!(scan.series.len(), 2);
    assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
    assert!(scan.skipped[0].0.ends_with("README.txt"));

    // The folder opens on the larger series.
    let v = load(dir.path()).unwrap();
    assert_eq!(v.geometry.dims, [COLS, ROWS, 4]);
    assert_eq!(v.source.modality.as_deref(), Some("CT"));
    for k in 0..4 {
        for y in 0..ROWS {
            for x in 0..COLS {
                let hu = 2.0 * stored(k, y, x) as f32 - 1024.0;
                assert_eq!(v.voxels[v.index(x, y, k)], hu, "slice {k} ({x},{y})");
            }
        }
    }
    let sp = v.geometry.spacing_mm;
    assert!(
        (sp[0] - 0.7).abs() < 1e-9 && (sp[1] - 0.8).abs() < 1e-9 && (sp[2] - STEP).abs() < 1e-9,
        "{sp:?}"
    );
    // World position of voxel (x, y, k) = origin + x·0.7·row + y·0.8·col + k·2.5·normal, in LPS;
    // RAS flips the first two coordinates.
    let (o, n) = (orientation(), normal());
    for (x, y, k) in [(0usize, 0usize, 0usize), (4, 2, 3), (1, 2, 1)] {
        let w = v.geometry.world([x as f64, y as f64, k as f64]);
        for i in 0..3 {
            let lps = ORIGIN[i]
                + x as f64 * 0.7 * o[i]
                + y as f64 * 0.8 * o[3 + i]
                + k as f64 * STEP * n[i];
            let ras = if i < 2 { -lps } else { lps };
            assert!(
                (w[i] - ras).abs() < 1e-6,
                "voxel ({x},{y},{k}) axis {i}: {} vs {ras}",
                w[i]
            );
        }
    }
    assert_eq!(
        v.geometry.orientation(),
        "LPS",
        "rows → patient left, columns mostly posterior, normal mostly superior"
    );

    let other = load_series(dir.path(), Some("1.2.3.4.2")).unwrap();
    assert_eq!(other.geometry.dims, [COLS, ROWS, 2]);
    assert_eq!(other.geometry.spacing_mm[2], 5.0);
    assert!(other.voxels.iter().all(|&v| v == 2.0 * 7.0 - 1024.0));
    let err = load_series(dir.path(), Some("9.9"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no series 9.9"), "{err}");
    // `medseg info DIR` describes every series from one scan of the folder.
    match medseg_data::info::info(dir.path()).unwrap() {
        medseg_data::info::Info::DicomFolder {
            series,
            skipped_files,
            ..
        } => {
            assert_eq!((series.len(), skipped_files), (2, 1));
            let depths: Vec<usize> = series
                .iter()
                .map(|s| s.image.as_ref().unwrap().dims[2])
                .collect();
            assert!(depths.contains(&4) && depths.contains(&2), "{depths:?}");
        }
        other => panic!("expected a DICOM folder, got {other:?}"),
    }
}

#[test]
fn multi_frame_files_use_per_frame_positions() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = base("1.2.3.9", "1.2.3.9.1");
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("3"),
    ));
    let orient = InMemDicomObject::from_element_iter([DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    )]);
    let shared = InMemDicomObject::from_element_iter([DataElement::new(
        tags::PLANE_ORIENTATION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![orient]),
    )]);
    o.put(DataElement::new(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![shared]),
    ));
    // Frames stored in the order z = 8, 0, 4.
    let zs = [8.0, 0.0, 4.0];
    let per_frame: Vec<InMemDicomObject> = zs
        .iter()
        .map(|&z| {
            let pos = InMemDicomObject::from_element_iter([DataElement::new(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                ds(&[0.0, 0.0, z]),
            )]);
            InMemDicomObject::from_element_iter([DataElement::new(
                tags::PLANE_POSITION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![pos]),
            )])
        })
        .collect();
    o.put(DataElement::new(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(per_frame),
    ));
    o.put(pixels((0..3).flat_map(|f| {
        std::iter::repeat_n(f as i16 * 10, ROWS * COLS)
    })));
    let path = dir.path().join("mf.dcm");
    write(o, "1.2.3.9.1", &path);
    let v = load(&path).unwrap();
    assert_eq!(v.geometry.dims, [COLS, ROWS, 3]);
    assert_eq!(v.geometry.spacing_mm[2], 4.0);
    // Sorted by position: z = 0 (frame 1), 4 (frame 2), 8 (frame 0).
    let first = |k: usize| v.voxels[v.index(0, 0, k)];
    assert_eq!(
        [first(0), first(1), first(2)],
        [2.0 * 10.0 - 1024.0, 2.0 * 20.0 - 1024.0, -1024.0]
    );
    assert_eq!(v.geometry.world([0.0, 0.0, 2.0])[2], 8.0);
}

#[test]
fn in_memory_dicom_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let path = dir.path().join("img0.dcm");
    let bytes = std::fs::read(&path).unwrap();
    let a = load(&path).unwrap();
    let b = medseg_data::volume::load_bytes(&path, &bytes).unwrap();
    assert_eq!(a.voxels, b.voxels);
    assert_eq!(a.geometry, b.geometry);
}

fn us(o: &mut InMemDicomObject, tag: dicom_core::Tag, v: impl Into<u16>) {
    o.put(DataElement::new(
        tag,
        VR::US,
        PrimitiveValue::from(v.into()),
    ));
}

/// Colour stored plane by plane (PlanarConfiguration 1) reads as the same RGB pixels as the
/// usual interleaved layout.
#[test]
fn rgb_planes_read_as_interleaved_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (5usize, 3usize);
    let rgb = |x: usize, y: usize| [(x * 40) as u8, (y * 70) as u8, (x + y) as u8 * 9];
    for planar in [0u16, 1] {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7"),
        ));
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.77"),
        ));
        us(&mut o, tags::SAMPLES_PER_PIXEL, 3u16);
        o.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
        us(&mut o, tags::PLANAR_CONFIGURATION, planar);
        us(&mut o, tags::ROWS, h as u16);
        us(&mut o, tags::COLUMNS, w as u16);
        us(&mut o, tags::BITS_ALLOCATED, 8u16);
        us(&mut o, tags::BITS_STORED, 8u16);
        us(&mut o, tags::HIGH_BIT, 7u16);
        us(&mut o, tags::PIXEL_REPRESENTATION, 0u16);
        let mut bytes = Vec::new();
        if planar == 0 {
            for y in 0..h {
                for x in 0..w {
                    bytes.extend(rgb(x, y));
                }
            }
        } else {
            for c in 0..3 {
                for y in 0..h {
                    for x in 0..w {
                        bytes.push(rgb(x, y)[c]);
                    }
                }
            }
        }
        bytes.push(0); // even length
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(bytes),
        ));
        let path = dir.path().join(format!("rgb{planar}.dcm"));
        write(o, "1.2.3.77", &path);
        let v = load(&path).unwrap();
        assert_eq!(
            (v.geometry.dims, v.channels),
            ([w, h, 1], 3),
            "planar {planar}"
        );
        for y in 0..h {
            for x in 0..w {
                let i = v.index(x, y, 0) * 3;
                let want = rgb(x, y).map(|c| c as f32);
                assert_eq!(&v.voxels[i..i + 3], &want, "planar {planar} at ({x}, {y})");
            }
        }
    }
}
