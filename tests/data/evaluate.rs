//! `medseg eval` on folders of masks: the numbers, the pooled DSC, and the refusals that keep a
//! wrong input from giving a plausible-looking result.

use image::{GrayImage, ImageBuffer, Luma};
use medseg_data::evaluate::{evaluate, EvalOptions};
use medseg_data::MaskOptions;
use std::path::Path;

fn save(dir: &Path, name: &str, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(dir).unwrap();
    GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(dir.join(name))
        .unwrap();
}

#[test]
fn dice_per_case_and_pooled_over_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    // Case a: reference x < 8 (64 px), prediction x < 6 (48 px): DSC 2·48 / 112.
    save(&gt, "a.png", 16, 8, |x, _| if x < 8 { 255 } else { 0 });
    save(&pred, "a.png", 16, 8, |x, _| if x < 6 { 255 } else { 0 });
    // Case b: identical 2×2 squares (4 px).
    save(
        &gt,
        "b.png",
        16,
        8,
        |x, y| if x < 2 && y < 2 { 255 } else { 0 },
    );
    save(
        &pred,
        "b.png",
        16,
        8,
        |x, y| if x < 2 && y < 2 { 255 } else { 0 },
    );
    let r = evaluate(&pred, &gt, &EvalOptions::default(), &mut |_, _| true).unwrap();
    assert_eq!(r.cases.len(), 2);
    let a = &r.cases[0];
    assert_eq!((a.case.as_str(), a.label), ("a", 1));
    assert!((a.metrics.dice - 96.0 / 112.0).abs() < 1e-12);
    assert!((r.cases[1].metrics.dice - 1.0).abs() < 1e-12);
    // Pooled: TP 52, FP 0, FN 16.
    assert!((r.pooled_dice[&1] - 104.0 / 120.0).abs() < 1e-12);
    assert!((r.mean["dice"] - (96.0 / 112.0 + 1.0) / 2.0).abs() < 1e-12);
    assert!(r.labels_only_in_prediction.is_empty());
}

#[test]
fn a_label_only_in_the_prediction_is_pointed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    save(&gt, "f.png", 8, 8, |x, _| (x < 2) as u8);
    save(&pred, "f.png", 8, 8, |x, _| {
        if x < 2 {
            1
        } else if x > 5 {
            2
        } else {
            0
        }
    });
    let r = evaluate(&pred, &gt, &EvalOptions::default(), &mut |_, _| true).unwrap();
    assert_eq!(r.labels_only_in_prediction, vec![("f".to_string(), 2)]);
    let two = r.cases.iter().find(|c| c.label == 2).unwrap();
    assert_eq!((two.metrics.dice, two.metrics.iou), (1.0, 0.0));
    assert!(r.to_text().contains("label 2 is only in the prediction"));
}

#[test]
fn an_image_passed_as_a_mask_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    // A 16-bit grey "mask" with 1,024 distinct values.
    std::fs::create_dir_all(&pred).unwrap();
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(32, 32, |x, y| Luma([(y * 32 + x) as u16 * 50]))
        .save(pred.join("c.png"))
        .unwrap();
    save(&gt, "c.png", 32, 32, |x, _| if x < 4 { 255 } else { 0 });
    let e = evaluate(&pred, &gt, &EvalOptions::default(), &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1023 distinct label values")
            && e.contains("c.png")
            && e.contains("--threshold"),
        "{e}"
    );
    // Allowed explicitly, it is evaluated label by label.
    let opts = EvalOptions {
        masks: MaskOptions {
            max_labels: 2000,
            ..MaskOptions::default()
        },
        ..EvalOptions::default()
    };
    let r = evaluate(&pred, &gt, &opts, &mut |_, _| true).unwrap();
    assert_eq!(r.cases.len(), 1024);
}

#[test]
fn jpeg_masks_are_refused_unless_thresholded() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    let disc = |x: u32, y: u32| {
        if (x as i32 - 30).pow(2) + (y as i32 - 20).pow(2) < 12 * 12 {
            255
        } else {
            0
        }
    };
    save(&pred, "d.jpg", 64, 40, disc);
    save(&gt, "d.png", 64, 40, disc);
    let e = evaluate(&pred, &gt, &EvalOptions::default(), &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("d.jpg") && e.contains("lossy"), "{e}");
    let opts = EvalOptions {
        masks: MaskOptions {
            threshold: Some(0.5),
            ..MaskOptions::default()
        },
        ..EvalOptions::default()
    };
    let r = evaluate(&pred, &gt, &opts, &mut |_, _| true).unwrap();
    assert_eq!(r.cases.len(), 1, "one label, not the noise's grey levels");
    assert!(
        r.cases[0].metrics.dice > 0.97,
        "{}",
        r.cases[0].metrics.dice
    );
}

#[test]
fn a_size_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    save(&pred, "e.png", 16, 8, |x, _| (x < 3) as u8 * 255);
    save(&gt, "e.png", 8, 8, |x, _| (x < 3) as u8 * 255);
    let e = evaluate(&pred, &gt, &EvalOptions::default(), &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&pred.join("e.png").display().to_string())
            && e.contains(&gt.join("e.png").display().to_string()),
        "{e}"
    );
}

/// Nuclei label maps of the shared dsb2018 set: against themselves every image scores F1 1
/// (where instances remain off the border); turned into the three-class map and back (what a
/// perfect network's output becomes) they keep nearly every nucleus.
#[test]
fn instance_maps_score_cell_f1_and_survive_the_three_class_round_trip() {
    use medseg_data::evaluate::evaluate_instances;
    use medseg_data::instances::{classes_to_instances, instances_to_classes};
    let labels = crate::shared_data().join("microscopy/dsb2018/labels");
    let mut names: Vec<_> = std::fs::read_dir(&labels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let dir = tempfile::tempdir().unwrap();
    let (gt, same, round) = (
        dir.path().join("gt"),
        dir.path().join("same"),
        dir.path().join("round"),
    );
    for d in [&gt, &same, &round] {
        std::fs::create_dir_all(d).unwrap();
    }
    for p in names.iter().take(6) {
        let name = p.file_name().unwrap();
        std::fs::copy(p, gt.join(name)).unwrap();
        std::fs::copy(p, same.join(name)).unwrap();
        let m = medseg_data::load_labels(p).unwrap();
        let [w, h, _] = m.geometry.dims;
        let ids: Vec<u32> = m.labels.iter().map(|&v| v as u32).collect();
        let back = classes_to_instances(&instances_to_classes(&ids, w, h), w, h);
        let mut out = m.clone();
        out.labels = back.iter().map(|&v| v as u16).collect();
        medseg_data::save_labels(&round.join(name), &out, false).unwrap();
    }
    let r = evaluate_instances(&same, &gt, 0.5, &mut |_, _| true).unwrap();
    assert_eq!(r.cases.len(), 6);
    for c in &r.cases {
        if c.score.reference > 0 {
            assert_eq!(c.score.f1, 1.0, "{}", c.case);
        }
    }
    let r = evaluate_instances(&round, &gt, 0.5, &mut |_, _| true).unwrap();
    assert!(r.mean_f1 > 0.95, "{}", r.to_text());
    assert!(r.to_text().contains("mean over 6 images"));
}
