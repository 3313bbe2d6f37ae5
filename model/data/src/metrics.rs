//! Segmentation metrics in f64 on the CPU: overlap (DSC, IoU, precision, recall, specificity,
//! accuracy), surface distances in mm from a Euclidean distance transform (HD95, ASSD, NSD@τ) and
//! the cell-instance F1 of the NeurIPS 2022 cell-segmentation evaluation.
//!
//! Conventions (MODEL-SPEC §A.12):
//! * surfaces are X xor erode(X) with the face-connected structuring element, image borders
//!   counting as background; axes of length 1 are left out (a 2-D image uses 4-neighbours);
//! * DSC/HD95/ASSD with empty masks: |P| > 0, |G| = 0 → (DSC 1, distances 0); |P| = 0 → (0, 0);
//! * NSD: G and P empty → 1, exactly one empty → 0;
//! * HD95 is the 95th percentile (linear interpolation) of both directed distance sets together;
//! * ASSD pools both directions: the sum of the distances from every surface voxel of P to G and
//!   from every surface voxel of G to P, over the number of surface voxels of both (medpy ≥ 0.5,
//!   MONAI) — not the mean of the two directed means (medpy ≤ 0.4), which weighs a small
//!   surface as much as a large one;
//! * NSD weighs every surface voxel equally (the DeepMind implementation weighs surface elements by
//!   their area instead; the two agree closely on smooth shapes but are not identical);
//! * ratios whose denominator is 0 (e.g. precision with no predicted voxel) are NaN, reported as
//!   null and left out of means.

use crate::error::{DataError, Result};
use crate::geometry::Geometry;
use serde::Serialize;
use std::collections::HashMap;

/// Pixel counts of a binary comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

impl Confusion {
    pub fn of(pred: &[bool], gt: &[bool]) -> Self {
        let mut c = Confusion::default();
        for (&p, &g) in pred.iter().zip(gt) {
            match (p, g) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    pub fn add(&mut self, o: &Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }

    /// 2TP / (2TP + FP + FN), NaN when both masks are empty.
    pub fn dice(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    pub fn iou(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp + self.fn_)
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
}

/// Squared Euclidean distance (mm²) from every voxel to the nearest `true` voxel of `feature`
/// (infinite when there is none), by the separable lower-envelope algorithm of Felzenszwalb and
/// Huttenlocher with per-axis spacing.
pub fn edt_squared(feature: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = feature
        .iter()
        .map(|&f| if f { 0.0 } else { f64::INFINITY })
        .collect();
    let [nx, ny, nz] = dims;
    let strides = [1, nx, nx * ny];
    let mut line = Vec::new();
    let mut out = Vec::new();
    for axis in 0..3 {
        let n = dims[axis];
        if n == 1 {
            continue;
        }
        let stride = strides[axis];
        let (o1, o2) = match axis {
            0 => ((ny, nx), (nz, nx * ny)),
            1 => ((nx, 1), (nz, nx * ny)),
            _ => ((nx, 1), (ny, nx)),
        };
        for a in 0..o1.0 {
            for b in 0..o2.0 {
                let base = a * o1.1 + b * o2.1;
                line.clear();
                line.extend((0..n).map(|i| d[base + i * stride]));
                envelope(&line, spacing[axis], &mut out);
                for i in 0..n {
                    d[base + i * stride] = out[i];
                }
            }
        }
    }
    d
}

/// 1-D squared distance transform of sampled function `f` on a grid of step `s`.
fn envelope(f: &[f64], s: f64, out: &mut Vec<f64>) {
    let n = f.len();
    out.clear();
    out.resize(n, f64::INFINITY);
    let mut v: Vec<usize> = Vec::with_capacity(n); // parabola sites
    let mut z: Vec<f64> = Vec::with_capacity(n + 1); // boundaries (mm)
    for q in 0..n {
        if !f[q].is_finite() {
            continue;
        }
        let xq = q as f64 * s;
        loop {
            match v.last() {
                None => {
                    v.push(q);
                    z.clear();
                    z.push(f64::NEG_INFINITY);
                    break;
                }
                Some(&p) => {
                    let xp = p as f64 * s;
                    let inter = ((f[q] + xq * xq) - (f[p] + xp * xp)) / (2.0 * (xq - xp));
                    if inter <= *z.last().expect("one boundary per site") {
                        v.pop();
                        z.pop();
                        if v.is_empty() {
                            continue;
                        }
                    } else {
                        v.push(q);
                        z.push(inter);
                        break;
                    }
                }
            }
        }
    }
    if v.is_empty() {
        return;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        let xq = q as f64 * s;
        while k + 1 < v.len() && z[k + 1] < xq {
            k += 1;
        }
        let xp = v[k] as f64 * s;
        *o = (xq - xp) * (xq - xp) + f[v[k]];
    }
}

/// Surface voxels: in the mask, with a face neighbour outside it (or on the image border).
/// Axes of length 1 are ignored.
pub fn surface(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let mut s = vec![false; mask.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                if !mask[i] {
                    continue;
                }
                let mut edge = false;
                let coords = [x, y, z];
                for axis in 0..3 {
                    let n = dims[axis];
                    if n == 1 {
                        continue;
                    }
                    let stride = [1, nx, nx * ny][axis];
                    let c = coords[axis];
                    if c == 0 || c == n - 1 || !mask[i - stride] || !mask[i + stride] {
                        edge = true;
                        break;
                    }
                }
                s[i] = edge;
            }
        }
    }
    s
}

/// Distances (mm) from each surface voxel of `from` to the nearest surface voxel of `to`.
pub fn directed_surface_distances(
    from_surface: &[bool],
    to_surface: &[bool],
    geometry: &Geometry,
) -> Vec<f64> {
    let d2 = edt_squared(to_surface, geometry.dims, geometry.spacing_mm);
    from_surface
        .iter()
        .zip(&d2)
        .filter(|(&s, _)| s)
        .map(|(_, &d)| d.sqrt())
        .collect()
}

/// Percentile with linear interpolation between order statistics (numpy's default).
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

/// Every per-case metric of one label.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CaseMetrics {
    pub dice: f64,
    pub iou: f64,
    pub precision: f64,
    pub recall: f64,
    pub specificity: f64,
    pub accuracy: f64,
    pub hd95_mm: f64,
    pub assd_mm: f64,
    pub nsd: f64,
}

impl CaseMetrics {
    pub const NAMES: [&'static str; 9] = [
        "dice",
        "iou",
        "precision",
        "recall",
        "specificity",
        "accuracy",
        "hd95_mm",
        "assd_mm",
        "nsd",
    ];

    pub fn values(&self) -> [f64; 9] {
        [
            self.dice,
            self.iou,
            self.precision,
            self.recall,
            self.specificity,
            self.accuracy,
            self.hd95_mm,
            self.assd_mm,
            self.nsd,
        ]
    }
}

/// Metrics of binary masks `pred` and `gt` on `geometry`, NSD at tolerance `tau_mm`.
pub fn binary_metrics(pred: &[bool], gt: &[bool], geometry: &Geometry, tau_mm: f64) -> CaseMetrics {
    let c = Confusion::of(pred, gt);
    let (np, ng) = (c.tp + c.fp, c.tp + c.fn_);
    let (dice, hd95, assd, nsd) = if np > 0 && ng > 0 {
        let (sp, sg) = (surface(pred, geometry.dims), surface(gt, geometry.dims));
        let pg = directed_surface_distances(&sp, &sg, geometry);
        let gp = directed_surface_distances(&sg, &sp, geometry);
        let assd = pg.iter().chain(&gp).sum::<f64>() / (pg.len() + gp.len()) as f64;
        let within = pg.iter().chain(&gp).filter(|&&d| d <= tau_mm).count();
        let nsd = within as f64 / (pg.len() + gp.len()) as f64;
        let mut all: Vec<f64> = pg.into_iter().chain(gp).collect();
        (c.dice(), percentile(&mut all, 95.0), assd, nsd)
    } else if np > 0 {
        (1.0, 0.0, 0.0, 0.0)
    } else {
        (0.0, 0.0, 0.0, if ng == 0 { 1.0 } else { 0.0 })
    };
    CaseMetrics {
        dice,
        iou: c.iou(),
        precision: c.precision(),
        recall: c.recall(),
        specificity: c.specificity(),
        accuracy: c.accuracy(),
        hd95_mm: hd95,
        assd_mm: assd,
        nsd,
    }
}

/// Mean of the finite values (NaN when there is none).
pub fn nanmean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        s += v;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Connected components of a 2-D mask (8-connectivity, as scikit-image's default), ids from 1.
pub fn connected_components(mask: &[bool], width: usize, height: usize) -> Vec<u32> {
    let mut labels = vec![0u32; mask.len()];
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx < 0 || yy < 0 || xx >= width as isize || yy >= height as isize {
                        continue;
                    }
                    let j = yy as usize * width + xx as usize;
                    if mask[j] && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
    }
    labels
}

/// Sets to 0 every instance with a pixel within `border` pixels of the image edge.
pub fn remove_border_instances(instances: &mut [u32], width: usize, height: usize, border: usize) {
    let mut touching = std::collections::HashSet::new();
    for y in 0..height {
        for x in 0..width {
            if x < border || y < border || x + border >= width || y + border >= height {
                let l = instances[y * width + x];
                if l != 0 {
                    touching.insert(l);
                }
            }
        }
    }
    for l in instances.iter_mut() {
        if touching.contains(l) {
            *l = 0;
        }
    }
}

/// Instance-level detection score of one image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CellScore {
    pub true_positives: usize,
    pub predicted: usize,
    pub reference: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl CellScore {
    fn from_counts(tp: usize, predicted: usize, reference: usize) -> Self {
        let precision = if predicted == 0 {
            0.0
        } else {
            tp as f64 / predicted as f64
        };
        let recall = if reference == 0 {
            0.0
        } else {
            tp as f64 / reference as f64
        };
        let f1 = if tp == 0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        CellScore {
            true_positives: tp,
            predicted,
            reference,
            precision,
            recall,
            f1,
        }
    }
}

/// Images above this many pixels are scored in tiles (the challenge's whole-slide rule).
pub const CELL_TILE_THRESHOLD: usize = 25_000_000;
pub const CELL_TILE: usize = 2000;

/// Cell F1 at IoU ≥ `threshold` (0.5 in the challenge): instances touching a 2-pixel border are
/// removed from both maps, then the largest one-to-one matching among pairs with IoU ≥ threshold
/// counts the true positives. F1 is 0 when there is none. Images over 25 M pixels are scored on
/// 2000 × 2000 tiles with the counts summed.
pub fn cell_f1(
    gt: &[u32],
    pred: &[u32],
    width: usize,
    height: usize,
    threshold: f64,
) -> Result<CellScore> {
    if gt.len() != width * height || pred.len() != width * height {
        return Err(DataError::Mismatch(format!(
            "instance maps hold {} and {} pixels, the image {width}×{height}",
            gt.len(),
            pred.len()
        )));
    }
    if width * height <= CELL_TILE_THRESHOLD {
        return Ok(cell_f1_single(gt, pred, width, height, threshold));
    }
    let (mut tp, mut np, mut ng) = (0, 0, 0);
    for y0 in (0..height).step_by(CELL_TILE) {
        for x0 in (0..width).step_by(CELL_TILE) {
            let (tw, th) = (CELL_TILE.min(width - x0), CELL_TILE.min(height - y0));
            let cut = |m: &[u32]| -> Vec<u32> {
                (0..th)
                    .flat_map(|y| {
                        m[(y0 + y) * width + x0..(y0 + y) * width + x0 + tw]
                            .iter()
                            .copied()
                    })
                    .collect()
            };
            let s = cell_f1_single(&cut(gt), &cut(pred), tw, th, threshold);
            tp += s.true_positives;
            np += s.predicted;
            ng += s.reference;
        }
    }
    Ok(CellScore::from_counts(tp, np, ng))
}

fn cell_f1_single(
    gt: &[u32],
    pred: &[u32],
    width: usize,
    height: usize,
    threshold: f64,
) -> CellScore {
    let (mut g, mut p) = (gt.to_vec(), pred.to_vec());
    remove_border_instances(&mut g, width, height, 2);
    remove_border_instances(&mut p, width, height, 2);
    let mut area_g: HashMap<u32, u64> = HashMap::new();
    let mut area_p: HashMap<u32, u64> = HashMap::new();
    let mut inter: HashMap<(u32, u32), u64> = HashMap::new();
    for (&a, &b) in g.iter().zip(&p) {
        if a != 0 {
            *area_g.entry(a).or_default() += 1;
        }
        if b != 0 {
            *area_p.entry(b).or_default() += 1;
        }
        if a != 0 && b != 0 {
            *inter.entry((a, b)).or_default() += 1;
        }
    }
    let gi: Vec<u32> = {
        let mut v: Vec<u32> = area_g.keys().copied().collect();
        v.sort_unstable();
        v
    };
    let pi: Vec<u32> = {
        let mut v: Vec<u32> = area_p.keys().copied().collect();
        v.sort_unstable();
        v
    };
    let pindex: HashMap<u32, usize> = pi.iter().enumerate().map(|(i, &l)| (l, i)).collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); gi.len()];
    for (gk, &gl) in gi.iter().enumerate() {
        for (&(a, b), &n) in inter.iter().filter(|((a, _), _)| *a == gl) {
            let iou = n as f64 / (area_g[&a] + area_p[&b] - n) as f64;
            if iou >= threshold {
                edges[gk].push(pindex[&b]);
            }
        }
    }
    // Maximum bipartite matching by augmenting paths.
    let mut match_p: Vec<Option<usize>> = vec![None; pi.len()];
    fn augment(
        u: usize,
        edges: &[Vec<usize>],
        seen: &mut [bool],
        match_p: &mut [Option<usize>],
    ) -> bool {
        for &v in &edges[u] {
            if seen[v] {
                continue;
            }
            seen[v] = true;
            if match_p[v].is_none_or(|w| augment(w, edges, seen, match_p)) {
                match_p[v] = Some(u);
                return true;
            }
        }
        false
    }
    let mut tp = 0;
    for u in 0..gi.len() {
        let mut seen = vec![false; pi.len()];
        if augment(u, &edges, &mut seen, &mut match_p) {
            tp += 1;
        }
    }
    CellScore::from_counts(tp, pi.len(), gi.len())
}
