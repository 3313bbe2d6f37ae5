//! PNG/JPEG/BMP/TIFF in, PNG masks out.

use crate::shared_data;
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use medseg_data::geometry::Geometry;
use medseg_data::{load, load_labels, load_mask, save_labels, LabelMap, MaskOptions};

#[test]
fn formats_and_bit_depths() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = RgbImage::from_fn(5, 4, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]));
    for ext in ["png", "bmp", "tif"] {
        let p = dir.path().join(format!("c.{ext}"));
        rgb.save(&p).unwrap();
        let v = load(&p).unwrap();
        assert_eq!((v.geometry.dims, v.channels), ([5, 4, 1], 3), "{ext}");
        assert_eq!(
            &v.voxels[v.index(3, 2, 0) * 3..v.index(3, 2, 0) * 3 + 3],
            &[30.0, 40.0, 7.0],
            "{ext}"
        );
    }
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(3, 2, |x, y| Luma([1000 * x as u16 + 30000 * y as u16]));
    let p = dir.path().join("g16.png");
    g16.save(&p).unwrap();
    let v = load(&p).unwrap();
    assert_eq!(v.channels, 1);
    assert_eq!(v.source.datatype, "uint16 grey");
    assert_eq!(
        v.voxels,
        vec![0.0, 1000.0, 2000.0, 30000.0, 31000.0, 32000.0]
    );
    let jpg = load(&shared_data().join("polyp/images/cvc_1.jpg")).unwrap();
    assert_eq!((jpg.geometry.dims, jpg.channels), ([256, 256, 1], 3));
}

#[test]
fn masks_binary_and_multi_label_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let geometry = Geometry::axis_aligned([4, 3, 1], [1.0; 3]);
    let mut m = LabelMap::new(geometry.clone());
    m.labels[5] = 1;
    m.labels[6] = 1;
    let p = dir.path().join("bin.png");
    save_labels(&p, &m, false).unwrap();
    // Written as 0/255.
    let img = image::open(&p).unwrap().to_luma8();
    assert_eq!(img.get_pixel(1, 1).0[0], 255);
    assert_eq!(img.get_pixel(0, 0).0[0], 0);
    assert_eq!(load_labels(&p).unwrap().labels, m.labels);

    m.labels[7] = 3;
    let p = dir.path().join("multi.png");
    save_labels(&p, &m, false).unwrap();
    assert_eq!(
        image::open(&p).unwrap().to_luma8().get_pixel(3, 1).0[0],
        3,
        "ids as grey values"
    );
    assert_eq!(load_labels(&p).unwrap().labels, m.labels);

    m.labels[8] = 4000;
    let p = dir.path().join("wide.png");
    save_labels(&p, &m, false).unwrap();
    assert_eq!(load_labels(&p).unwrap().labels, m.labels, "16-bit ids");

    let mut vol = LabelMap::new(Geometry::axis_aligned([2, 2, 2], [1.0; 3]));
    vol.labels[0] = 1;
    let err = save_labels(&dir.path().join("v.png"), &vol, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("PNG holds one slice"), "{err}");
    let err = save_labels(&dir.path().join("v.jpg"), &m, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".nii, .nii.gz or .png"), "{err}");
}

#[test]
fn grey_masks_with_other_values_keep_them_as_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ids.png");
    GrayImage::from_fn(3, 1, |x, _| Luma([x as u8]))
        .save(&p)
        .unwrap();
    assert_eq!(load_labels(&p).unwrap().labels, vec![0, 1, 2]);
    // A grey-looking RGB mask is accepted.
    let p = dir.path().join("rgbgrey.png");
    RgbImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    })
    .save(&p)
    .unwrap();
    assert_eq!(load_labels(&p).unwrap().labels, vec![0, 1]);
}

/// Grey float32 and int16 TIFFs (what microscopy and some exports write) load with their values.
#[test]
fn float_and_signed_tiffs_keep_their_values() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = tempfile::tempdir().unwrap();
    let f: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.5).collect();
    let p = dir.path().join("f32.tif");
    let mut enc = TiffEncoder::new(std::fs::File::create(&p).unwrap()).unwrap();
    enc.write_image::<colortype::Gray32Float>(4, 3, &f).unwrap();
    let v = load(&p).unwrap();
    assert_eq!((v.geometry.dims, v.channels), ([4, 3, 1], 1));
    assert_eq!(v.source.datatype, "float32 grey");
    assert_eq!(v.voxels, f);
    let s: Vec<i16> = (0..6).map(|i| i * 1000 - 2500).collect();
    let p = dir.path().join("i16.tif");
    let mut enc = TiffEncoder::new(std::fs::File::create(&p).unwrap()).unwrap();
    enc.write_image::<colortype::GrayI16>(3, 2, &s).unwrap();
    let v = load(&p).unwrap();
    assert_eq!(v.voxels, s.iter().map(|&x| x as f32).collect::<Vec<_>>());
}

/// A mask stored as JPEG is refused as labels, and binarised when a threshold is given: the
/// disc comes back within a pixel's ring of compression noise.
#[test]
fn jpeg_masks_need_a_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let disc = |x: u32, y: u32| (x as i32 - 32).pow(2) + (y as i32 - 24).pow(2) < 15 * 15;
    let img = GrayImage::from_fn(64, 48, |x, y| Luma([if disc(x, y) { 255 } else { 0 }]));
    let p = dir.path().join("m.jpg");
    img.save(&p).unwrap();
    let e = load_labels(&p).unwrap_err().to_string();
    assert!(e.contains("lossy") && e.contains("--threshold"), "{e}");
    let opts = MaskOptions {
        threshold: Some(0.5),
        ..MaskOptions::default()
    };
    let m = load_mask(&p, &opts).unwrap();
    assert_eq!(m.foreground_labels(), vec![1]);
    let wrong = (0..48u32)
        .flat_map(|y| (0..64u32).map(move |x| (x, y)))
        .filter(|&(x, y)| (m.labels[(y * 64 + x) as usize] == 1) != disc(x, y))
        .count();
    assert!(wrong < 20, "{wrong} pixels differ from the disc");
    // A clean PNG mask is the same with or without the threshold.
    let p = dir.path().join("m.png");
    img.save(&p).unwrap();
    assert_eq!(
        load_mask(&p, &opts).unwrap().labels,
        load_labels(&p).unwrap().labels
    );
}
