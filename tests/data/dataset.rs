//! Dataset folders: pairing, reports, splits, loading that skips bad files.

use crate::shared_data;
use image::{GrayImage, Luma, RgbImage};
use medseg_data::dataset::{image_stem, load_pairs, Dataset};
use medseg_data::MaskOptions;
use std::path::Path;

fn make(root: &Path) {
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    for i in 0..10 {
        RgbImage::new(8, 6)
            .save(root.join(format!("images/case{i}.png")))
            .unwrap();
        if i != 3 {
            GrayImage::from_fn(8, 6, |x, _| Luma([if x > 3 { 255 } else { 0 }]))
                .save(root.join(format!("masks/case{i}.png")))
                .unwrap();
        }
    }
    GrayImage::new(8, 6)
        .save(root.join("masks/orphan.png"))
        .unwrap();
    std::fs::write(root.join("images/notes.txt"), "x").unwrap();
    // A corrupt image and a mask of the wrong size.
    std::fs::write(root.join("images/case7.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    GrayImage::new(4, 4)
        .save(root.join("masks/case8.png"))
        .unwrap();
}

#[test]
fn pairs_reports_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let d = Dataset::scan(dir.path()).unwrap();
    assert_eq!(d.pairs.len(), 9);
    assert_eq!(d.images_without_mask.len(), 1);
    assert_eq!(d.masks_without_image.len(), 1);
    assert_eq!(d.ignored.len(), 1);
    assert_eq!(d.warnings().len(), 3);

    let a = d.split(42, 0.3);
    assert_eq!(a, d.split(42, 0.3), "same seed, same split");
    assert_eq!((a.train.len(), a.val.len()), (6, 3));
    let mut all: Vec<_> = a
        .train
        .iter()
        .chain(&a.val)
        .map(|p| p.stem.clone())
        .collect();
    all.sort();
    let mut stems: Vec<_> = d.pairs.iter().map(|p| p.stem.clone()).collect();
    stems.sort();
    assert_eq!(all, stems, "disjoint and complete");
    assert_ne!(a.val, d.split(43, 0.3).val);

    let (ok, failed) = load_pairs(&d.pairs, &MaskOptions::default());
    assert_eq!(ok.len(), 7);
    assert_eq!(failed.len(), 2);
    let msgs: Vec<String> = failed.iter().map(|(_, e)| e.to_string()).collect();
    assert!(msgs.iter().any(|m| m.contains("case7.png")), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("case8.png") && m.contains("[4, 4, 1]")),
        "{msgs:?}"
    );
    assert_eq!(ok[0].mask.labels.iter().filter(|&&l| l == 1).count(), 4 * 6);

    // The survey sees the same: 7 readable pairs of 8×6 RGB with labels {0, 1}, 2 unreadable.
    let s = d.survey(100, &MaskOptions::default(), &mut |_, _| true);
    assert_eq!(s.looked_at, 9);
    assert_eq!((s.min_dims, s.max_dims), ([8, 6, 1], [8, 6, 1]));
    assert_eq!(s.channels.into_iter().collect::<Vec<_>>(), vec![3]);
    assert_eq!(s.labels.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    let bad: Vec<&str> = s.unreadable.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(bad, vec!["case7", "case8"]);
    // And stops when asked.
    assert_eq!(
        d.survey(100, &MaskOptions::default(), &mut |i, _| i < 2)
            .looked_at,
        2
    );
}

#[test]
fn stems_strip_double_extensions() {
    assert_eq!(image_stem(Path::new("a/b.nii.gz")).as_deref(), Some("b"));
    assert_eq!(image_stem(Path::new("x.y.PNG")).as_deref(), Some("x.y"));
    assert_eq!(image_stem(Path::new("notes.txt")), None);
}

#[test]
fn the_reference_polyp_split_loads() {
    let root = shared_data().join("polyp");
    let d = Dataset::scan(&root).unwrap();
    assert_eq!(d.pairs.len(), 1201);
    let s = d.split_from_file(&root.join("split.json")).unwrap();
    assert_eq!((s.train.len(), s.val.len()), (960, 241));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("split.json");
    std::fs::write(&bad, r#"{"train": ["cvc_1", "nope_1"], "val": []}"#).unwrap();
    let err = d.split_from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("nope_1"), "{err}");
}
