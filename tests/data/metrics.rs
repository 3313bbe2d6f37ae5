//! Metrics against hand-computed cases and brute force.

use medseg_data::geometry::Geometry;
use medseg_data::metrics::*;
use medseg_data::preprocess::SeededRng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn confusion_ratios() {
    let p = [true, true, false, false, true];
    let g = [true, false, true, false, true];
    let c = Confusion::of(&p, &g);
    assert_eq!(
        c,
        Confusion {
            tp: 2,
            fp: 1,
            fn_: 1,
            tn: 1
        }
    );
    assert!(close(c.dice(), 4.0 / 6.0));
    assert!(close(c.iou(), 0.5));
    assert!(close(c.precision(), 2.0 / 3.0));
    assert!(close(c.recall(), 2.0 / 3.0));
    assert!(close(c.specificity(), 0.5));
    assert!(close(c.accuracy(), 0.6));
    assert!(Confusion::of(&[false], &[false]).precision().is_nan());
}

#[test]
fn edt_matches_brute_force_with_anisotropic_spacing() {
    let mut rng = SeededRng::new(11);
    for (dims, spacing) in [
        ([9, 7, 5], [0.7, 1.3, 2.9]),
        ([13, 1, 4], [1.0, 1.0, 0.25]),
        ([6, 6, 1], [2.0, 0.5, 1.0]),
    ] {
        let n: usize = dims.iter().product();
        let feature: Vec<bool> = (0..n).map(|_| rng.next_f64() < 0.08).collect();
        let d = edt_squared(&feature, dims, spacing);
        let coords = |i: usize| {
            [
                i % dims[0],
                (i / dims[0]) % dims[1],
                i / (dims[0] * dims[1]),
            ]
        };
        for i in 0..n {
            let a = coords(i);
            let mut best = f64::INFINITY;
            for j in (0..n).filter(|&j| feature[j]) {
                let b = coords(j);
                let s: f64 = (0..3)
                    .map(|k| ((a[k] as f64 - b[k] as f64) * spacing[k]).powi(2))
                    .sum();
                best = best.min(s);
            }
            assert!(
                (d[i] - best).abs() < 1e-9 || (d[i].is_infinite() && best.is_infinite()),
                "{dims:?} voxel {i}: {} vs {best}",
                d[i]
            );
        }
    }
}

#[test]
fn surface_of_a_cube_and_of_a_square() {
    let dims = [5, 5, 5];
    let mut m = vec![false; 125];
    for z in 1..4 {
        for y in 1..4 {
            for x in 1..4 {
                m[(z * 5 + y) * 5 + x] = true;
            }
        }
    }
    let s = surface(&m, dims);
    assert_eq!(s.iter().filter(|&&v| v).count(), 26, "all but the centre");
    assert!(!s[(2 * 5 + 2) * 5 + 2]);
    // 2-D: a 3×3 square has 8 edge pixels (4-neighbour erosion); the image border is background.
    let sq: Vec<bool> = (0..9).map(|_| true).collect();
    assert_eq!(surface(&sq, [3, 3, 1]).iter().filter(|&&v| v).count(), 8);
}

#[test]
fn single_voxels_at_a_known_distance() {
    // P at x = 0, G at x = 3 with spacing 2 mm along x: every distance is 6 mm.
    let g = Geometry::axis_aligned([5, 1, 1], [2.0, 1.0, 1.0]);
    let p = [true, false, false, false, false];
    let t = [false, false, false, true, false];
    let m = binary_metrics(&p, &t, &g, 5.0);
    assert!(close(m.hd95_mm, 6.0) && close(m.assd_mm, 6.0));
    assert_eq!(m.nsd, 0.0, "6 mm is outside a 5 mm tolerance");
    assert_eq!(m.dice, 0.0);
    assert_eq!(
        binary_metrics(&p, &t, &g, 6.0).nsd,
        1.0,
        "the tolerance is inclusive"
    );
}

#[test]
fn anisotropic_shift_along_z() {
    // Two 4×4×2 boxes in an 6×6×6 grid, the second one slice higher; z spacing 2.5 mm.
    let dims = [6, 6, 6];
    let g = Geometry::axis_aligned(dims, [0.8, 0.8, 2.5]);
    let boxm = |z0: usize| {
        let mut m = vec![false; 216];
        for z in z0..z0 + 2 {
            for y in 1..5 {
                for x in 1..5 {
                    m[(z * 6 + y) * 6 + x] = true;
                }
            }
        }
        m
    };
    let (p, t) = (boxm(2), boxm(3));
    let m = binary_metrics(&p, &t, &g, 1.0);
    // Overlap: one slice of 16 voxels out of 32 + 32.
    assert!(close(m.dice, 0.5));
    // Both boxes are all surface (2 slices thick). Voxels of P's lower slice are 2.5 mm from T,
    // the upper slice is shared; the same for T's upper slice: distances {0 ×16, 2.5 ×16} each way.
    assert!(close(m.assd_mm, 1.25), "{}", m.assd_mm);
    assert!(close(m.hd95_mm, 2.5));
    assert!(close(m.nsd, 0.5), "half the surface within 1 mm");
    assert!(close(binary_metrics(&p, &t, &g, 2.5).nsd, 1.0));
}

#[test]
fn empty_mask_conventions() {
    let g = Geometry::axis_aligned([4, 1, 1], [1.0; 3]);
    let some = [false, true, true, false];
    let none = [false; 4];
    let m = binary_metrics(&none, &some, &g, 1.0);
    assert_eq!(
        (m.dice, m.hd95_mm, m.assd_mm, m.nsd),
        (0.0, 0.0, 0.0, 0.0),
        "P empty, G not"
    );
    let m = binary_metrics(&some, &none, &g, 1.0);
    assert_eq!(
        (m.dice, m.hd95_mm, m.nsd),
        (1.0, 0.0, 0.0),
        "G empty, P not (medpy convention)"
    );
    let m = binary_metrics(&none, &none, &g, 1.0);
    assert_eq!((m.dice, m.nsd), (0.0, 1.0), "both empty");
    assert!(m.precision.is_nan() && m.recall.is_nan());
    let m = binary_metrics(&some, &some, &g, 0.0);
    assert_eq!((m.dice, m.hd95_mm, m.nsd), (1.0, 0.0, 1.0), "identical");
}

#[test]
fn percentile_interpolates_like_numpy() {
    assert!(close(percentile(&mut [4.0, 1.0, 3.0, 2.0], 95.0), 3.85));
    assert!(close(percentile(&mut [5.0], 95.0), 5.0));
    assert!(close(
        percentile(&mut (0..=100).map(|v| v as f64).collect::<Vec<_>>(), 95.0),
        95.0
    ));
}

#[test]
fn cell_f1_on_hand_made_instances() {
    // 12×8 image. GT: cells 1 (matched well), 2 (matched poorly), 3 (missed), 4 (touches the
    // border, removed). Prediction: a (good match of 1), b (IoU 1/3 with 2), c (spurious).
    let (w, h) = (12, 8);
    let mut gt = vec![0u32; w * h];
    let mut pr = vec![0u32; w * h];
    let rect = |m: &mut Vec<u32>, id: u32, x0: usize, y0: usize, x1: usize, y1: usize| {
        for y in y0..y1 {
            for x in x0..x1 {
                m[y * w + x] = id;
            }
        }
    };
    rect(&mut gt, 1, 2, 2, 5, 5); // 9 px
    rect(&mut pr, 10, 2, 2, 5, 4); // 6 px inside → IoU 6/9
    rect(&mut gt, 2, 6, 2, 8, 5); // 6 px
    rect(&mut pr, 20, 7, 2, 8, 4); // 2 px inside → IoU 2/6
    rect(&mut gt, 3, 9, 3, 10, 5);
    rect(&mut gt, 4, 0, 6, 3, 8); // touches the border
    rect(&mut pr, 30, 3, 6, 4, 6); // empty rect (no pixels)
    rect(&mut pr, 40, 5, 5, 6, 6); // spurious 1 px
    let s = cell_f1(&gt, &pr, w, h, 0.5).unwrap();
    assert_eq!((s.true_positives, s.reference, s.predicted), (1, 3, 3));
    assert!(close(s.precision, 1.0 / 3.0) && close(s.recall, 1.0 / 3.0) && close(s.f1, 1.0 / 3.0));
    // The matching is one-to-one: one prediction covering two equal cells matches one of them.
    let mut gt2 = vec![0u32; w * h];
    let mut pr2 = vec![0u32; w * h];
    rect(&mut gt2, 1, 2, 2, 4, 4);
    rect(&mut gt2, 2, 4, 2, 6, 4);
    rect(&mut pr2, 1, 2, 2, 6, 4); // IoU exactly 0.5 with each cell
    let s = cell_f1(&gt2, &pr2, w, h, 0.5).unwrap();
    assert_eq!(s.true_positives, 1, "{s:?}");
}

#[test]
fn connected_components_are_eight_connected() {
    let m = [true, false, false, false, true, false, false, false, true];
    let l = connected_components(&m, 3, 3);
    assert_eq!(
        l.iter().max(),
        Some(&1),
        "diagonal pixels form one component"
    );
    let l = connected_components(&[true, false, true], 3, 1);
    assert_eq!(l, vec![1, 0, 2]);
}

#[test]
fn cell_f1_tiles_whole_slide_images() {
    // 5200 × 5000 pixels (over 25 M): scored on 2000² tiles. One cell inside each tile, predicted
    // exactly, plus one cell cut by the tile border at x = 2000, which both tiles see touching
    // their border (removed), so TP = reference = prediction = 9.
    let (w, h) = (5200usize, 5000usize);
    let mut gt = vec![0u32; w * h];
    let mut id = 0;
    for ty in 0..3 {
        for tx in 0..3 {
            id += 1;
            for y in 0..10 {
                for x in 0..10 {
                    gt[(ty * 2000 + 100 + y) * w + tx * 2000 + 100 + x] = id;
                }
            }
        }
    }
    for y in 500..510 {
        for x in 1995..2005 {
            gt[y * w + x] = 99;
        }
    }
    let s = cell_f1(&gt, &gt, w, h, 0.5).unwrap();
    assert_eq!((s.true_positives, s.reference, s.predicted), (9, 9, 9));
    assert!(close(s.f1, 1.0));
    // Below the threshold the whole image is one piece: the cut cell counts.
    let small = cell_f1(&gt[..w * 4000], &gt[..w * 4000], w, 4000, 0.5).unwrap();
    assert_eq!(small.reference, 7, "6 interior cells + the cut one");
}

/// A far false-positive pixel: the pooled ASSD (medpy ≥ 0.5, MONAI) and the mean of the two
/// directed means (medpy ≤ 0.4) differ; ours is the pooled one.
#[test]
fn assd_pools_both_directions() {
    // 1-D along x (the length-1 axes are left out): G = x 0..=3, P = G plus x = 15.
    let g = Geometry::axis_aligned([20, 1, 1], [1.0, 1.0, 1.0]);
    let t: Vec<bool> = (0..20).map(|x| x <= 3).collect();
    let p: Vec<bool> = (0..20).map(|x| x <= 3 || x == 15).collect();
    let m = binary_metrics(&p, &t, &g, 1.0);
    // Surfaces: G {0, 3}, P {0, 3, 15}. P→G {0, 0, 12}, G→P {0, 0}.
    assert!(close(m.assd_mm, 12.0 / 5.0), "pooled: {}", m.assd_mm);
    // 95th percentile of {0, 0, 0, 0, 12}: position 3.8 → 0.8 · 12.
    assert!(close(m.hd95_mm, 9.6), "{}", m.hd95_mm);
    assert!(close(m.nsd, 4.0 / 5.0));
}

/// Random 2-D and 3-D masks with anisotropic spacing: HD95, ASSD and NSD equal the reference
/// definitions computed by brute force (every surface voxel against every other).
#[test]
fn surface_metrics_match_brute_force_on_random_masks() {
    let mut state = 12345u64;
    let mut coin = |p: f64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) < p
    };
    for (dims, spacing) in [
        ([24usize, 20, 1], [0.7, 1.3, 1.0]),
        ([10, 9, 8], [0.9, 0.9, 2.5]),
    ] {
        let n = dims[0] * dims[1] * dims[2];
        for _ in 0..3 {
            // Random fields: each voxel set with probability 0.35.
            let p: Vec<bool> = (0..n).map(|_| coin(0.35)).collect();
            let t: Vec<bool> = (0..n).map(|_| coin(0.35)).collect();
            let geometry = Geometry::axis_aligned(dims, spacing);
            let at = |i: usize| {
                [
                    i % dims[0],
                    (i / dims[0]) % dims[1],
                    i / (dims[0] * dims[1]),
                ]
            };
            let on_surface = |m: &[bool], i: usize| {
                if !m[i] {
                    return false;
                }
                let c = at(i);
                (0..3).filter(|&a| dims[a] > 1).any(|a| {
                    [-1i64, 1].iter().any(|&d| {
                        let mut q = c;
                        let v = q[a] as i64 + d;
                        if v < 0 || v >= dims[a] as i64 {
                            return true;
                        }
                        q[a] = v as usize;
                        !m[(q[2] * dims[1] + q[1]) * dims[0] + q[0]]
                    })
                })
            };
            let surf =
                |m: &[bool]| -> Vec<usize> { (0..n).filter(|&i| on_surface(m, i)).collect() };
            let (sp, sg) = (surf(&p), surf(&t));
            let dist = |i: usize, j: usize| {
                let (a, b) = (at(i), at(j));
                (0..3)
                    .map(|k| ((a[k] as f64 - b[k] as f64) * spacing[k]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            let directed = |from: &[usize], to: &[usize]| -> Vec<f64> {
                from.iter()
                    .map(|&i| to.iter().map(|&j| dist(i, j)).fold(f64::INFINITY, f64::min))
                    .collect()
            };
            let mut all = directed(&sp, &sg);
            all.extend(directed(&sg, &sp));
            let assd = all.iter().sum::<f64>() / all.len() as f64;
            let tau = 1.0;
            let nsd = all.iter().filter(|&&d| d <= tau).count() as f64 / all.len() as f64;
            all.sort_by(f64::total_cmp);
            let pos = 0.95 * (all.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let hd95 = all[lo] + (all[hi] - all[lo]) * (pos - lo as f64);
            let m = binary_metrics(&p, &t, &geometry, tau);
            assert!(
                close(m.assd_mm, assd),
                "{dims:?}: ASSD {} vs {assd}",
                m.assd_mm
            );
            assert!(
                close(m.hd95_mm, hd95),
                "{dims:?}: HD95 {} vs {hd95}",
                m.hd95_mm
            );
            assert!(close(m.nsd, nsd), "{dims:?}: NSD {} vs {nsd}", m.nsd);
        }
    }
}
