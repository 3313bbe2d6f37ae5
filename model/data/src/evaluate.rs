//! `medseg eval`: predictions against references, paired by file stem, every metric per case and
//! foreground label, and their means.

use crate::dataset::files_by_stem;
use crate::error::{DataError, Result};
use crate::metrics::{binary_metrics, cell_f1, nanmean, CaseMetrics, CellScore};
use crate::volume::{load_labels, load_mask, LabelMap, MaskOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// NSD tolerance in mm.
    pub nsd_tolerance_mm: f64,
    /// Spacing given to 2-D raster masks (which carry none); 1 mm by default.
    pub raster_spacing_mm: [f64; 2],
    /// How mask files become labels (thresholding, the most distinct labels allowed).
    pub masks: MaskOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            nsd_tolerance_mm: 2.0,
            raster_spacing_mm: [1.0, 1.0],
            masks: MaskOptions::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseEntry {
    pub case: String,
    pub label: u16,
    #[serde(flatten)]
    pub metrics: CaseMetrics,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub cases: Vec<CaseEntry>,
    /// Mean of every metric over all (case, label) entries, NaNs left out.
    pub mean: BTreeMap<&'static str, f64>,
    /// The same means per label.
    pub per_label: BTreeMap<u16, BTreeMap<&'static str, f64>>,
    /// DSC per label over all cases' voxels pooled (2·ΣTP / (2·ΣTP + ΣFP + ΣFN)), as training's
    /// validation reports it.
    pub pooled_dice: BTreeMap<u16, f64>,
    pub nsd_tolerance_mm: f64,
    pub predictions_without_reference: Vec<PathBuf>,
    pub references_without_prediction: Vec<PathBuf>,
    /// (case, label) of labels found only in the prediction: by the TransUNet convention the
    /// papers use (MODEL-SPEC §A.12) they score DSC 1 and distances 0, while IoU and precision
    /// are 0 — said in the report so a reader is not misled.
    pub labels_only_in_prediction: Vec<(String, u16)>,
}

fn is_raster(m: &LabelMap) -> bool {
    m.nifti.is_none()
}

fn means<'a>(entries: impl Iterator<Item = &'a CaseEntry> + Clone) -> BTreeMap<&'static str, f64> {
    CaseMetrics::NAMES
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            (
                name,
                nanmean(entries.clone().map(|e| e.metrics.values()[i])),
            )
        })
        .collect()
}

/// Predictions and references paired by file stem: (stem, prediction, reference) and the files
/// of either side without a partner. No pair at all is an error naming both folders.
struct Pairs {
    pairs: Vec<(String, PathBuf, PathBuf)>,
    predictions_without_reference: Vec<PathBuf>,
    references_without_prediction: Vec<PathBuf>,
}

fn pair_files(pred_dir: &Path, gt_dir: &Path) -> Result<Pairs> {
    let (preds, _) = files_by_stem(pred_dir)?;
    let (mut gts, _) = files_by_stem(gt_dir)?;
    let mut pairs = Vec::new();
    let mut predictions_without_reference = Vec::new();
    for (stem, pred) in preds {
        match gts.remove(&stem) {
            Some(gt) => pairs.push((stem, pred, gt)),
            None => predictions_without_reference.push(pred),
        }
    }
    if pairs.is_empty() {
        return Err(DataError::Invalid(format!(
            "no prediction in {} has a reference of the same name in {}",
            pred_dir.display(),
            gt_dir.display()
        )));
    }
    Ok(Pairs {
        pairs,
        predictions_without_reference,
        references_without_prediction: gts.into_values().collect(),
    })
}

/// The warning lines for files that found no partner.
fn unpaired(predictions: &[PathBuf], references: &[PathBuf]) -> String {
    let mut s = String::new();
    for p in predictions {
        s += &format!(
            "warning: {}: no reference with this name; not evaluated\n",
            p.display()
        );
    }
    for p in references {
        s += &format!(
            "warning: {}: no prediction with this name; not evaluated\n",
            p.display()
        );
    }
    s
}

/// Metrics of one case for every label present in either map; `case` names the two files in
/// messages.
pub fn evaluate_case(
    case: &str,
    pred: &LabelMap,
    gt: &LabelMap,
    tau_mm: f64,
) -> Result<Vec<CaseEntry>> {
    if pred.geometry.dims != gt.geometry.dims {
        return Err(DataError::Mismatch(format!(
            "{case}: the prediction is {:?} voxels, the reference {:?}",
            pred.geometry.dims, gt.geometry.dims
        )));
    }
    if !pred.geometry.matches(&gt.geometry, 1e-3) {
        return Err(DataError::Mismatch(format!(
            "{case}: the prediction and the reference lie on different grids (affines {:?} and {:?})",
            pred.geometry.world_from_voxel, gt.geometry.world_from_voxel
        )));
    }
    let mut labels = pred.foreground_labels();
    labels.extend(gt.foreground_labels());
    labels.sort_unstable();
    labels.dedup();
    Ok(labels
        .into_iter()
        .map(|l| CaseEntry {
            case: case.to_string(),
            label: l,
            metrics: binary_metrics(&pred.mask_of(l), &gt.mask_of(l), &gt.geometry, tau_mm),
        })
        .collect())
}

pub fn evaluate(
    pred_dir: &Path,
    gt_dir: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let found = pair_files(pred_dir, gt_dir)?;
    let mut cases = Vec::new();
    // (TP, FP, FN) per label over every case.
    let mut pooled: BTreeMap<u16, [u64; 3]> = BTreeMap::new();
    let mut labels_only_in_prediction = Vec::new();
    let total = found.pairs.len();
    for (i, (stem, pred_path, gt_path)) in found.pairs.into_iter().enumerate() {
        if !progress(i, total) {
            return Err(DataError::Cancelled);
        }
        let mut pred = load_mask(&pred_path, &opts.masks)?;
        let mut gt = load_mask(&gt_path, &opts.masks)?;
        for m in [&mut pred, &mut gt] {
            if is_raster(m) {
                let [sx, sy] = opts.raster_spacing_mm;
                m.geometry =
                    crate::geometry::Geometry::axis_aligned(m.geometry.dims, [sx, sy, 1.0]);
            }
        }
        let both = format!(
            "{} (prediction) and {} (reference)",
            pred_path.display(),
            gt_path.display()
        );
        let mut entries = evaluate_case(&both, &pred, &gt, opts.nsd_tolerance_mm)?;
        let in_reference = gt.foreground_labels();
        for e in &mut entries {
            e.case.clone_from(&stem);
            pooled.entry(e.label).or_default();
            if in_reference.binary_search(&e.label).is_err() {
                labels_only_in_prediction.push((stem.clone(), e.label));
            }
        }
        // One pass over the voxels for every label's counts.
        for (&p, &g) in pred.labels.iter().zip(&gt.labels) {
            if p == g {
                if p != 0 {
                    pooled.entry(p).or_default()[0] += 1;
                }
            } else {
                if p != 0 {
                    pooled.entry(p).or_default()[1] += 1;
                }
                if g != 0 {
                    pooled.entry(g).or_default()[2] += 1;
                }
            }
        }
        cases.extend(entries);
    }
    let mut per_label = BTreeMap::new();
    let mut labels: Vec<u16> = cases.iter().map(|c| c.label).collect();
    labels.sort_unstable();
    labels.dedup();
    for l in labels {
        per_label.insert(l, means(cases.iter().filter(|c| c.label == l)));
    }
    let pooled_dice = pooled
        .into_iter()
        .map(|(l, [tp, fp, f_n])| {
            let d = (2 * tp + fp + f_n) as f64;
            (l, if d > 0.0 { 2.0 * tp as f64 / d } else { 1.0 })
        })
        .collect();
    Ok(EvalReport {
        pooled_dice,
        mean: means(cases.iter()),
        per_label,
        cases,
        nsd_tolerance_mm: opts.nsd_tolerance_mm,
        predictions_without_reference: found.predictions_without_reference,
        references_without_prediction: found.references_without_prediction,
        labels_only_in_prediction,
    })
}

impl EvalReport {
    pub fn to_text(&self) -> String {
        let mut s = format!("{:<28} {:>5}", "case", "label");
        for n in CaseMetrics::NAMES {
            s += &format!(" {:>11}", n);
        }
        s.push('\n');
        let fmt = |v: f64| {
            if v.is_finite() {
                format!(" {v:>11.4}")
            } else {
                format!(" {:>11}", "—")
            }
        };
        for c in &self.cases {
            s += &format!("{:<28} {:>5}", c.case, c.label);
            for v in c.metrics.values() {
                s += &fmt(v);
            }
            s.push('\n');
        }
        s += &format!("{:<28} {:>5}", "mean", "all");
        for n in CaseMetrics::NAMES {
            s += &fmt(self.mean[n]);
        }
        s.push('\n');
        for (l, d) in &self.pooled_dice {
            s += &format!("pooled DSC of label {l} over all cases: {d:.4}\n");
        }
        for (case, label) in &self.labels_only_in_prediction {
            s += &format!(
                "note: {case}: label {label} is only in the prediction; it scores DSC 1 and HD95/ASSD 0 by the TransUNet convention (MODEL-SPEC §A.12), IoU and precision 0\n"
            );
        }
        s += &unpaired(
            &self.predictions_without_reference,
            &self.references_without_prediction,
        );
        s
    }
}

/// Cell F1 of one case (`medseg eval --instances`).
#[derive(Clone, Debug, Serialize)]
pub struct InstanceCase {
    pub case: String,
    #[serde(flatten)]
    pub score: CellScore,
}

/// `medseg eval --instances`: predicted against reference instance label maps (2-D, 0
/// background, every other value one instance), paired by file stem.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceReport {
    pub cases: Vec<InstanceCase>,
    pub iou_threshold: f64,
    /// Means over the cases (the challenge's per-image average).
    pub mean_f1: f64,
    pub mean_precision: f64,
    pub mean_recall: f64,
    pub predictions_without_reference: Vec<PathBuf>,
    pub references_without_prediction: Vec<PathBuf>,
}

/// Cell F1, precision and recall at IoU ≥ `iou` per image (MODEL-SPEC §A.12:
/// [`crate::metrics::cell_f1`]), and their means.
pub fn evaluate_instances(
    pred_dir: &Path,
    gt_dir: &Path,
    iou: f64,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<InstanceReport> {
    let found = pair_files(pred_dir, gt_dir)?;
    let mut cases = Vec::new();
    let total = found.pairs.len();
    for (i, (stem, pred_path, gt_path)) in found.pairs.into_iter().enumerate() {
        if !progress(i, total) {
            return Err(DataError::Cancelled);
        }
        let (pred, gt) = (load_labels(&pred_path)?, load_labels(&gt_path)?);
        let [w, h, d] = gt.geometry.dims;
        if pred.geometry.dims != gt.geometry.dims || d != 1 {
            return Err(DataError::Mismatch(format!(
                "{} (prediction, {:?}) and {} (reference, {:?}): instance maps must be 2-D and of one size",
                pred_path.display(),
                pred.geometry.dims,
                gt_path.display(),
                gt.geometry.dims
            )));
        }
        let ids = |m: &LabelMap| -> Vec<u32> { m.labels.iter().map(|&v| v as u32).collect() };
        let score = cell_f1(&ids(&gt), &ids(&pred), w, h, iou)?;
        cases.push(InstanceCase { case: stem, score });
    }
    let mean = |f: fn(&CellScore) -> f64| nanmean(cases.iter().map(|c| f(&c.score)));
    Ok(InstanceReport {
        mean_f1: mean(|s| s.f1),
        mean_precision: mean(|s| s.precision),
        mean_recall: mean(|s| s.recall),
        cases,
        iou_threshold: iou,
        predictions_without_reference: found.predictions_without_reference,
        references_without_prediction: found.references_without_prediction,
    })
}

impl InstanceReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<28} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}\n",
            "case", "TP", "pred", "ref", "precision", "recall", "F1"
        );
        for c in &self.cases {
            let k = &c.score;
            s += &format!(
                "{:<28} {:>6} {:>6} {:>6} {:>9.4} {:>9.4} {:>9.4}\n",
                c.case, k.true_positives, k.predicted, k.reference, k.precision, k.recall, k.f1
            );
        }
        s += &format!(
            "mean over {} images at IoU ≥ {}: precision {:.4}, recall {:.4}, F1 {:.4}\n",
            self.cases.len(),
            self.iou_threshold,
            self.mean_precision,
            self.mean_recall,
            self.mean_f1
        );
        s += &unpaired(
            &self.predictions_without_reference,
            &self.references_without_prediction,
        );
        s
    }
}
