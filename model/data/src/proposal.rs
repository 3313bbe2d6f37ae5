//! A network's proposal for an image or volume: per voxel the foreground probability (quantised
//! to 16 bits) and the most likely foreground class, so the app can re-threshold it live without
//! running the network again, show it as a heat map, and count what it would add.

use crate::error::DataError;
use crate::geometry::Geometry;
use crate::nifti::NiftiHeader;
use crate::volume::LabelMap;

/// Levels of the quantised probability (0 ↔ 0.0, `LEVELS` ↔ 1.0).
pub const LEVELS: u16 = u16::MAX;

/// Probabilities of one segmentation run on the grid of its image.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub geometry: Geometry,
    /// The source image's NIfTI header, kept so the accepted mask can be written with it.
    pub nifti: Option<NiftiHeader>,
    /// P(foreground) per voxel (1 − P(background) for softmax networks), as
    /// round(p · [`LEVELS`]).
    pub foreground: Vec<u16>,
    /// The most likely foreground class (1-based) per voxel.
    pub class: Vec<u16>,
    /// Class names, background first.
    pub classes: Vec<String>,
}

/// round(p · LEVELS) of a probability (clamped to [0, 1]; NaN counts as 0).
pub fn quantise(p: f32) -> u16 {
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    (p * LEVELS as f32).round() as u16
}

/// The smallest quantised level that counts as foreground at `threshold`, i.e. the level q with
/// q ≥ threshold · LEVELS − ½: for a probability p this keeps exactly p ≥ threshold up to the
/// quantisation step.
pub fn threshold_level(threshold: f32) -> u32 {
    let t = threshold.clamp(0.0, 1.0) as f64 * LEVELS as f64;
    (t - 0.5).ceil().max(0.0) as u32
}

impl Proposal {
    /// An empty proposal (all background) on `geometry`.
    pub fn new(geometry: Geometry, classes: Vec<String>) -> Self {
        let n = geometry.voxel_count();
        Proposal {
            geometry,
            nifti: None,
            foreground: vec![0; n],
            class: vec![1; n],
            classes,
        }
    }

    /// Stores the class probabilities (`channels` × `pixels`, channel-major: one sigmoid channel,
    /// or a softmax over background and the foreground classes) of `pixels` voxels whose places
    /// in the grid `place` gives.
    pub fn set_from_probabilities(
        &mut self,
        probs: &[f32],
        channels: usize,
        pixels: usize,
        place: &mut dyn FnMut(usize) -> usize,
    ) {
        for p in 0..pixels {
            let dst = place(p);
            if channels <= 1 {
                self.foreground[dst] = quantise(probs[p]);
                self.class[dst] = 1;
            } else {
                let mut best = 1;
                for c in 2..channels {
                    if probs[c * pixels + p] > probs[best * pixels + p] {
                        best = c;
                    }
                }
                self.foreground[dst] = quantise(1.0 - probs[p]);
                self.class[dst] = best as u16;
            }
        }
    }

    /// Whether voxel `i` is foreground at the given threshold level.
    pub fn is_foreground(&self, i: usize, level: u32) -> bool {
        self.foreground[i] as u32 >= level.max(1)
    }

    /// The label map at `threshold` (a voxel is labelled with its most likely foreground class
    /// when its foreground probability reaches the threshold).
    pub fn labels(&self, threshold: f32) -> LabelMap {
        let level = threshold_level(threshold);
        let labels = (0..self.foreground.len())
            .map(|i| {
                if self.is_foreground(i, level) {
                    self.class[i]
                } else {
                    0
                }
            })
            .collect();
        LabelMap {
            geometry: self.geometry.clone(),
            labels,
            nifti: self.nifti.clone(),
        }
    }

    /// The instance map of an instance model's proposal (classes background, interior,
    /// boundary: [`crate::instances`]) at `threshold`: the labelled interior's connected
    /// components grown into the boundary, ids from 1, with the number of instances. 2-D only;
    /// more instances than a 16-bit map holds is an error.
    pub fn instances(&self, threshold: f32) -> Result<(LabelMap, usize), DataError> {
        let [w, h, d] = self.geometry.dims;
        if d != 1 {
            return Err(DataError::Invalid(format!(
                "instance maps are made of 2-D images; this proposal has {d} slices"
            )));
        }
        let mut labels = self.labels(threshold);
        let ids = crate::instances::classes_to_instances(&labels.labels, w, h);
        let n = ids.iter().copied().max().unwrap_or(0) as usize;
        labels.labels = ids
            .iter()
            .map(|&v| u16::try_from(v))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                DataError::Invalid(format!("{n} instances: more than a 16-bit label map holds"))
            })?;
        Ok((labels, n))
    }

    /// Voxels per class (index = label; 0 counts the background) at `threshold`.
    pub fn counts(&self, threshold: f32) -> Vec<usize> {
        let level = threshold_level(threshold);
        let mut counts = vec![0usize; self.classes.len().max(2)];
        for i in 0..self.foreground.len() {
            let l = if self.is_foreground(i, level) {
                self.class[i] as usize
            } else {
                0
            };
            if l < counts.len() {
                counts[l] += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_exactly_the_probabilities_at_or_above_it() {
        let g = Geometry::axis_aligned([5, 1, 1], [1.0; 3]);
        let mut p = Proposal::new(g, vec!["background".into(), "polyp".into()]);
        let probs = [0.0, 0.4999, 0.5, 0.75, 1.0];
        p.set_from_probabilities(&probs, 1, 5, &mut |i| i);
        assert_eq!(p.labels(0.5).labels, vec![0, 0, 1, 1, 1]);
        assert_eq!(p.labels(0.8).labels, vec![0, 0, 0, 0, 1]);
        // Threshold 0 still leaves a probability of exactly 0 out.
        assert_eq!(p.labels(0.0).labels, vec![0, 1, 1, 1, 1]);
        assert_eq!(p.counts(0.5), vec![2, 3]);
    }

    #[test]
    fn softmax_proposals_take_the_most_likely_foreground_class() {
        let g = Geometry::axis_aligned([3, 1, 1], [1.0; 3]);
        let names = ["background", "liver", "spleen"].map(String::from).to_vec();
        let mut p = Proposal::new(g, names);
        // Channel-major: background, liver, spleen for three voxels.
        let probs = [0.9, 0.2, 0.45, 0.05, 0.5, 0.1, 0.05, 0.3, 0.45];
        p.set_from_probabilities(&probs, 3, 3, &mut |i| i);
        // Voxel 0 ties between its classes (the first wins) but is background at 0.5;
        // voxel 2 has P(fg) = 0.55, most of it spleen.
        assert_eq!(p.labels(0.5).labels, vec![0, 1, 2]);
        assert_eq!(p.class, vec![1, 1, 2]);
        assert_eq!(p.counts(0.5), vec![1, 1, 1]);
        let probs = [0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.7, 0.7, 0.7];
        p.set_from_probabilities(&probs, 3, 3, &mut |i| i);
        assert_eq!(p.labels(0.5).labels, vec![2, 2, 2]);
    }
}
