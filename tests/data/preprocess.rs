//! Resizing, normalisation and augmentations.

use medseg_data::preprocess::*;

#[test]
fn bilinear_matches_half_pixel_reference_values() {
    // PyTorch F.interpolate([[0,1],[2,3]], 4×4, bilinear, align_corners=False).
    let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 1, 4, 4);
    let want = [
        0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
    ];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
    // Same size is the identity; channels stay apart.
    let img: Vec<f32> = (0..24).map(|v| v as f32).collect();
    assert_eq!(resize_bilinear(&img, 4, 2, 3, 4, 2), img);
}

#[test]
fn nearest_takes_floor_of_scaled_index() {
    let src = [1u16, 2, 3, 4, 5, 6];
    assert_eq!(
        resize_nearest(&src, 3, 2, 6, 2),
        vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    );
    assert_eq!(resize_nearest(&src, 3, 2, 2, 1), vec![1, 2]);
}

#[test]
fn normalisations() {
    let mut ct = vec![-1000.0, -125.0, 75.0, 275.0, 2000.0];
    Normalization::CT_ABDOMEN.apply(&mut ct);
    assert_eq!(ct, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
    let mut mr = vec![0.0, 1.0, 2.0, 3.0];
    Normalization::MrZScore.apply(&mut mr);
    // Foreground {1, 2, 3}: mean 2, std sqrt(2/3).
    let s = (2.0f64 / 3.0).sqrt();
    for (a, b) in mr.iter().zip([-2.0 / s, -1.0 / s, 0.0, 1.0 / s]) {
        assert!((*a as f64 - b).abs() < 1e-5);
    }
    // Official (x - mean)/std then min-max equals min-max of x.
    let x: Vec<f32> = vec![10.0, 20.0, 40.0, 110.0, 15.0, 60.0];
    let mut a = x.clone();
    Normalization::RgbMinMax255.apply(&mut a);
    let (mean, std) = (157.56, 24.84);
    let mut b: Vec<f32> = x.iter().map(|v| (v - mean) / std).collect();
    Normalization::RgbMinMax255.apply(&mut b);
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-3);
    }
    assert_eq!((a[0], a[3]), (0.0, 255.0));
}

fn sample(w: usize, h: usize) -> Sample {
    Sample {
        width: w,
        height: h,
        channels: 2,
        image: (0..w * h * 2).map(|v| v as f32).collect(),
        mask: (0..w * h).map(|v| v as f32).collect(),
    }
}

#[test]
fn rotations_and_flips() {
    // 90° rotation about the centre of an even square image is an exact permutation: it equals
    // rot90, and four of them give the original.
    let mut a = sample(6, 6);
    let mut b = a.clone();
    a.rotate(90.0);
    b.rot90(1);
    assert_eq!(a, b);
    // Counter-clockwise: the top-right pixel moves to the top-left.
    let orig = sample(6, 6);
    assert_eq!(a.mask[0], orig.mask[5]);
    for _ in 0..3 {
        a.rotate(90.0);
    }
    assert_eq!(a, orig);
    let mut f = orig.clone();
    f.hflip();
    assert_eq!(f.mask[0], orig.mask[5]);
    f.hflip();
    f.vflip();
    assert_eq!(f.mask[0], orig.mask[30]);
    // A 45° rotation leaves the corners empty (zero fill) and keeps the centre.
    let mut r = sample(8, 8);
    r.rotate(45.0);
    assert_eq!(r.mask[0], 0.0);
    assert_eq!(r.mask[4 * 8 + 4], orig_center(8));
    // Rectangular rot90 swaps the sides.
    let mut t = sample(4, 2);
    t.rot90(1);
    assert_eq!((t.width, t.height), (2, 4));
}

fn orig_center(n: usize) -> f32 {
    sample(n, n).mask[(n / 2) * n + n / 2]
}

#[test]
fn augmentation_is_deterministic_per_seed() {
    let run = |seed| {
        let mut aug = Augment::official(seed);
        (0..8)
            .map(|_| {
                let mut s = sample(8, 8);
                aug.apply(&mut s);
                s
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // The official transform draws one angle per run.
    match Augment::official(5).angle {
        RotationAngle::PerRun(a) => assert!((0.0..360.0).contains(&a)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rng_shuffle_is_a_permutation() {
    let mut v: Vec<usize> = (0..100).collect();
    SeededRng::new(1).shuffle(&mut v);
    let mut s = v.clone();
    s.sort();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
    assert_ne!(v, s);
}

#[test]
fn synapse_augmentation_keeps_labels_integral_and_is_seeded() {
    let run = |seed| {
        let mut aug = SynapseAugment::new(seed);
        (0..64)
            .map(|_| {
                let mut s = sample(32, 32);
                aug.apply(&mut s);
                s
            })
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    let orig = sample(32, 32);
    let mut changed = 0;
    for s in &a {
        // Nearest-neighbour moves only: every label value comes from the original (or is the fill).
        assert!(s.mask.iter().all(|v| *v == 0.0 || orig.mask.contains(v)));
        changed += (s != &orig) as usize;
    }
    assert!(
        changed >= 8,
        "about three quarters of samples change, {changed} of 16 did"
    );
}
