//! The open image and its label map: everything the viewer shows and the editor changes, with no
//! UI code. Planes, the screen ↔ voxel mapping, window/level, the brush, label statistics and
//! undo live here so they can be tested without a window.

use super::undo::{Change, Step, UndoStack};
use medseg_data::proposal::Proposal;
use medseg_data::volume::{Format, LabelMap, Volume};
use medseg_data::DataError;
use std::collections::HashMap;
use std::path::PathBuf;

/// Undo history bound per document.
pub const UNDO_LIMIT_BYTES: usize = 512 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "Axial",
            Plane::Coronal => "Coronal",
            Plane::Sagittal => "Sagittal",
        }
    }
}

/// How a plane lies on screen: voxel axis `u` runs to the right (reversed when `flip_u`), `v`
/// runs down (reversed when `flip_v`), `n` is the slice axis. `letters` are the anatomical
/// directions at the left, right, top and bottom edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneAxes {
    pub u: usize,
    pub flip_u: bool,
    pub v: usize,
    pub flip_v: bool,
    pub n: usize,
    pub letters: Option<[char; 4]>,
}

/// World axis (0 = x R, 1 = y A, 2 = z S) each voxel axis mostly points along, with the sign; None
/// when two voxel axes share one world axis (a degenerate affine).
fn world_axes(volume: &Volume) -> Option<[(usize, f64); 3]> {
    let m = &volume.geometry.world_from_voxel;
    let mut out = [(0usize, 0.0f64); 3];
    let mut used = [false; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let w = (0..3).max_by(|&a, &b| m[a][i].abs().total_cmp(&m[b][i].abs()))?;
        if used[w] || m[w][i] == 0.0 {
            return None;
        }
        used[w] = true;
        *o = (w, m[w][i].signum());
    }
    Some(out)
}

/// Voxel-axis → screen layout of a plane in radiological convention: axial and coronal show the
/// patient's right on the screen's left; axial has anterior up, coronal and sagittal superior
/// up; sagittal has anterior on the left. Grids without a usable affine keep voxel order.
pub fn plane_axes(volume: &Volume, plane: Plane) -> PlaneAxes {
    if is_photo(volume) {
        return PlaneAxes {
            u: 0,
            flip_u: false,
            v: 1,
            flip_v: false,
            n: 2,
            letters: None,
        };
    }
    // (world axis to the right, its sign toward the right), (world axis down, sign down).
    let (right, down) = match plane {
        Plane::Axial => ((0, -1.0), (1, -1.0)),
        Plane::Coronal => ((0, -1.0), (2, -1.0)),
        Plane::Sagittal => ((1, -1.0), (2, -1.0)),
    };
    let Some(axes) = world_axes(volume) else {
        let (u, v, n) = match plane {
            Plane::Axial => (0, 1, 2),
            Plane::Coronal => (0, 2, 1),
            Plane::Sagittal => (1, 2, 0),
        };
        return PlaneAxes {
            u,
            flip_u: false,
            v,
            flip_v: plane != Plane::Axial,
            n,
            letters: None,
        };
    };
    let find = |w: usize| (0..3).find(|&i| axes[i].0 == w).expect("a permutation");
    let u = find(right.0);
    let v = find(down.0);
    let n = 3 - u - v;
    let letter = |w: usize, positive: bool| match (w, positive) {
        (0, true) => 'R',
        (0, false) => 'L',
        (1, true) => 'A',
        (1, false) => 'P',
        (2, true) => 'S',
        _ => 'I',
    };
    // Left edge shows the direction opposite to "right", etc.
    let letters = [
        letter(right.0, right.1 < 0.0),
        letter(right.0, right.1 > 0.0),
        letter(down.0, down.1 < 0.0),
        letter(down.0, down.1 > 0.0),
    ];
    PlaneAxes {
        u,
        flip_u: axes[u].1 != right.1,
        v,
        flip_v: axes[v].1 != down.1,
        n,
        letters: Some(letters),
    }
}

/// A 2-D photo (PNG/JPEG/…): rows run down the screen as stored, no anatomical letters.
pub fn is_photo(volume: &Volume) -> bool {
    volume.geometry.dims[2] == 1
        && matches!(
            volume.source.format,
            Format::Png | Format::Jpeg | Format::Bmp | Format::Tiff
        )
}

/// Window centre (level) and width, in the image's units (HU for CT).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub level: f32,
    pub width: f32,
}

/// CT presets (width, level) as radiologists use them.
pub const CT_PRESETS: [(&str, Window); 4] = [
    (
        "Abdomen",
        Window {
            level: 40.0,
            width: 400.0,
        },
    ),
    (
        "Lung",
        Window {
            level: -600.0,
            width: 1500.0,
        },
    ),
    (
        "Bone",
        Window {
            level: 400.0,
            width: 1800.0,
        },
    ),
    (
        "Brain",
        Window {
            level: 40.0,
            width: 80.0,
        },
    ),
];

/// Window from the 0.5th to the 99.5th percentile of the finite intensities (all channels), from
/// a strided sample of at most ~1 M values.
pub fn auto_window(volume: &Volume) -> Window {
    let n = volume.voxels.len();
    let stride = (n / 1_000_000).max(1);
    let mut s: Vec<f32> = volume
        .voxels
        .iter()
        .step_by(stride)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if s.is_empty() {
        return Window {
            level: 0.5,
            width: 1.0,
        };
    }
    s.sort_by(f32::total_cmp);
    let at = |q: f64| s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)];
    let (lo, hi) = (at(0.005), at(0.995));
    Window {
        level: 0.5 * (lo + hi),
        width: (hi - lo).max(1e-3),
    }
}

/// A label's display settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelInfo {
    pub id: u16,
    pub name: String,
    pub colour: [u8; 3],
    pub visible: bool,
}

/// Distinct colours for the first labels, then a golden-angle hue walk.
pub fn default_colour(id: u16) -> [u8; 3] {
    const FIRST: [[u8; 3]; 8] = [
        [230, 40, 40],
        [40, 200, 60],
        [50, 110, 240],
        [240, 210, 30],
        [0, 210, 210],
        [220, 60, 220],
        [255, 140, 0],
        [150, 90, 255],
    ];
    if id >= 1 && (id as usize) <= FIRST.len() {
        return FIRST[id as usize - 1];
    }
    let h = (id as f32 * 137.508).rem_euclid(360.0) / 60.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [
        (r * 220.0) as u8 + 20,
        (g * 220.0) as u8 + 20,
        (b * 220.0) as u8 + 20,
    ]
}

/// Region of voxels changed since the GPU copy was last updated (inclusive min, exclusive max).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirtyBox {
    pub min: [usize; 3],
    pub max: [usize; 3],
}

impl DirtyBox {
    fn add(this: &mut Option<DirtyBox>, v: [usize; 3]) {
        match this {
            None => {
                *this = Some(DirtyBox {
                    min: v,
                    max: [v[0] + 1, v[1] + 1, v[2] + 1],
                })
            }
            Some(b) => {
                for (a, &x) in v.iter().enumerate() {
                    b.min[a] = b.min[a].min(x);
                    b.max[a] = b.max[a].max(x + 1);
                }
            }
        }
    }
}

/// A brush stroke in progress: the first old label of every voxel it touched.
#[derive(Debug, Default)]
pub struct Stroke {
    old: HashMap<u32, u16>,
    last: Option<[f64; 3]>,
}

/// An open image with its labels, view settings and edit history.
pub struct Document {
    pub image: Volume,
    /// A CT in Hounsfield units (DICOM modality, or a range from air to bone): HU read-out and
    /// the CT window presets.
    pub ct: bool,
    pub labels: LabelMap,
    pub label_info: Vec<LabelInfo>,
    /// Where the labels came from or were last saved (the default export path).
    pub labels_path: Option<PathBuf>,
    /// Edits not yet exported.
    pub unsaved: bool,
    pub undo: UndoStack,
    /// The crosshair: the voxel every plane passes through.
    pub cursor: [usize; 3],
    pub window: Window,
    pub auto_window: Window,
    pub opacity: f32,
    pub outline: bool,
    pub show_labels: bool,
    /// Voxels per label (index = label id).
    counts: Vec<u64>,
    /// Label voxels changed since the GPU copy was updated; `labels_reset` = upload everything.
    pub dirty: Option<DirtyBox>,
    pub labels_reset: bool,
    /// Bumped whenever `label_info`, opacity or the outline mode change.
    pub style_revision: u64,
    /// Bumped whenever a label voxel changes (to tell whether an export is still current).
    generation: u64,
    /// A network's proposal under review (not yet part of the labels).
    pub proposal: Option<Review>,
    /// Bumped whenever the proposal appears, goes, or its threshold or view change.
    pub proposal_revision: u64,
}

/// A network's proposal as the user reviews it: shown as its own layer, re-thresholded live,
/// optionally as a heat map; Accept merges it into the labels as one undo step.
#[derive(Clone, Debug)]
pub struct Review {
    /// Distinguishes proposals (a new one needs its probabilities uploaded).
    pub id: u64,
    pub proposal: Proposal,
    /// The model that made it.
    pub model: String,
    pub threshold: f32,
    /// Show the probabilities as a heat map instead of the thresholded outline.
    pub heat_map: bool,
    /// Voxels per class at `threshold` (counted when the threshold changes, not every frame).
    counts: Vec<usize>,
}

impl Document {
    /// A document for `image` with an empty label map.
    pub fn new(image: Volume) -> Self {
        let labels = LabelMap::for_image(&image);
        let auto = auto_window(&image);
        let ct = image
            .source
            .modality
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("CT"))
            || (image.channels == 1
                && image
                    .intensity_range()
                    .is_some_and(|(lo, hi)| lo <= -900.0 && hi >= 300.0));
        let window = if ct { CT_PRESETS[0].1 } else { auto };
        let d = image.geometry.dims;
        let mut doc = Document {
            cursor: [d[0] / 2, d[1] / 2, d[2] / 2],
            image,
            ct,
            labels,
            label_info: Vec::new(),
            labels_path: None,
            unsaved: false,
            undo: UndoStack::new(UNDO_LIMIT_BYTES),
            window,
            auto_window: auto,
            opacity: 0.5,
            outline: false,
            show_labels: true,
            counts: Vec::new(),
            dirty: None,
            labels_reset: true,
            style_revision: 0,
            generation: 0,
            proposal: None,
            proposal_revision: 0,
        };
        doc.recount();
        doc.ensure_label(1);
        doc
    }

    pub fn dims(&self) -> [usize; 3] {
        self.image.geometry.dims
    }

    /// Is this a single 2-D image (one plane shown)?
    pub fn is_2d(&self) -> bool {
        self.dims()[2] == 1
    }

    /// Replaces the label map with one read from a file (must be on the image's grid). This is
    /// one undo step, so a wrong file can be taken back.
    pub fn set_labels(&mut self, loaded: LabelMap, path: PathBuf) -> Result<(), DataError> {
        let g = &self.image.geometry;
        // Raster masks carry no affine: only their size must match a raster image.
        let same_grid = if is_photo(&self.image) {
            loaded.geometry.dims == g.dims
        } else {
            loaded
                .geometry
                .matches(g, 1e-3 * g.spacing_mm.iter().cloned().fold(1.0, f64::min))
        };
        if !same_grid {
            return Err(DataError::Mismatch(format!(
                "{}: the label map's grid ({:?} voxels, {}) does not match the image's ({:?} \
                 voxels, {}); open the mask that belongs to this image",
                path.display(),
                loaded.geometry.dims,
                loaded.geometry.orientation(),
                g.dims,
                g.orientation()
            )));
        }
        let new = loaded.labels;
        let step = self.replace_labels("Open labels", &new);
        self.undo.push(step);
        for l in self.present_labels() {
            self.ensure_label(l);
        }
        self.labels_path = Some(path);
        self.unsaved = false;
        Ok(())
    }

    /// Sets every voxel to `new` (same length) as one undo step — how a network's result or a
    /// loaded file enters the history. Returns the step (already applied, not yet pushed).
    pub fn replace_labels(&mut self, name: &str, new: &[u16]) -> Step {
        assert_eq!(new.len(), self.labels.labels.len(), "label map length");
        let mut changes = Vec::new();
        for (i, (&o, &n)) in self.labels.labels.iter().zip(new).enumerate() {
            if o != n {
                changes.push(Change {
                    index: i as u32,
                    old: o,
                    new: n,
                });
            }
        }
        for c in &changes {
            self.set_voxel(c.index as usize, c.new);
        }
        self.labels_reset = true;
        self.unsaved = true;
        Step {
            name: name.to_string(),
            changes,
        }
    }

    fn coords(&self, index: usize) -> [usize; 3] {
        let [nx, ny, _] = self.dims();
        [index % nx, (index / nx) % ny, index / (nx * ny)]
    }

    fn set_voxel(&mut self, index: usize, new: u16) {
        let old = self.labels.labels[index];
        if old == new {
            return;
        }
        self.labels.labels[index] = new;
        self.generation += 1;
        self.counts[old as usize] -= 1;
        if self.counts.len() <= new as usize {
            self.counts.resize(new as usize + 1, 0);
        }
        self.counts[new as usize] += 1;
        let c = self.coords(index);
        DirtyBox::add(&mut self.dirty, c);
    }

    fn recount(&mut self) {
        let mut counts = vec![0u64; self.labels.max_label() as usize + 1];
        for &l in &self.labels.labels {
            counts[l as usize] += 1;
        }
        self.counts = counts;
    }

    /// Labels present in the map other than 0, ascending.
    pub fn present_labels(&self) -> Vec<u16> {
        (1..self.counts.len())
            .filter(|&l| self.counts[l] > 0)
            .map(|l| l as u16)
            .collect()
    }

    /// Changes so far (compare two values to see whether the labels changed in between).
    pub fn undo_generation(&self) -> u64 {
        self.generation
    }

    /// Voxel count of a label.
    pub fn count(&self, label: u16) -> u64 {
        self.counts.get(label as usize).copied().unwrap_or(0)
    }

    /// Volume of one voxel in ml (mm³ / 1000).
    pub fn voxel_ml(&self) -> f64 {
        self.image.geometry.spacing_mm.iter().product::<f64>() / 1000.0
    }

    /// Adds a label's display entry if it has none.
    pub fn ensure_label(&mut self, id: u16) {
        if id == 0 || self.label_info.iter().any(|l| l.id == id) {
            return;
        }
        self.label_info.push(LabelInfo {
            id,
            name: format!("Label {id}"),
            colour: default_colour(id),
            visible: true,
        });
        self.label_info.sort_by_key(|l| l.id);
        self.style_revision += 1;
    }

    /// A new label id (one above the largest known) with a display entry.
    pub fn new_label(&mut self) -> Option<u16> {
        let top = self
            .label_info
            .iter()
            .map(|l| l.id)
            .chain(self.present_labels())
            .max()
            .unwrap_or(0);
        let id = top.checked_add(1)?;
        self.ensure_label(id);
        Some(id)
    }

    /// Sets every voxel of `label` to background, as one undo step.
    pub fn clear_label(&mut self, label: u16) {
        let new: Vec<u16> = self
            .labels
            .labels
            .iter()
            .map(|&l| if l == label { 0 } else { l })
            .collect();
        let step = self.replace_labels(&format!("Clear label {label}"), &new);
        self.undo.push(step);
    }

    /// Shows `proposal` (from `model`) for review at threshold 0.5; it must lie on the image's
    /// grid.
    pub fn propose(&mut self, proposal: Proposal, model: &str) -> Result<(), DataError> {
        if proposal.geometry.dims != self.dims() {
            return Err(DataError::Mismatch(format!(
                "the proposal is {:?} voxels, the image {:?}",
                proposal.geometry.dims,
                self.dims()
            )));
        }
        self.proposal_revision += 1;
        self.proposal = Some(Review {
            id: self.proposal_revision,
            model: model.to_string(),
            threshold: 0.5,
            heat_map: false,
            counts: proposal.counts(0.5),
            proposal,
        });
        Ok(())
    }

    /// Sets the review's threshold (clamped to [0, 1]).
    pub fn set_threshold(&mut self, threshold: f32) {
        if let Some(r) = self.proposal.as_mut() {
            r.threshold = threshold.clamp(0.0, 1.0);
            r.counts = r.proposal.counts(r.threshold);
            self.proposal_revision += 1;
        }
    }

    /// Drops the proposal; the labels stay as they are.
    pub fn reject_proposal(&mut self) {
        if self.proposal.take().is_some() {
            self.proposal_revision += 1;
        }
    }

    /// The document label each proposal class goes to: a label of the same name when there is
    /// one, else a new label named after the class.
    fn labels_for_classes(&mut self, classes: &[String]) -> Vec<u16> {
        let mut ids = vec![0u16];
        for name in classes.iter().skip(1) {
            let existing = self
                .label_info
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(name))
                .map(|l| l.id);
            let id = match existing {
                Some(id) => id,
                // An unnamed, still unused label (the default "Label 1") takes the class.
                None => match self
                    .label_info
                    .iter()
                    .find(|l| l.name == format!("Label {}", l.id) && self.count(l.id) == 0)
                    .map(|l| l.id)
                {
                    Some(id) => id,
                    None => self.new_label().unwrap_or(u16::MAX),
                },
            };
            if let Some(l) = self.label_info.iter_mut().find(|l| l.id == id) {
                l.name = name.clone();
            }
            ids.push(id);
        }
        self.style_revision += 1;
        ids
    }

    /// Merges the proposal at its threshold into the labels as ONE undo step ("Accept
    /// <model>"): its foreground voxels take their class's label, the rest keep theirs. Returns
    /// the voxels changed, None without a proposal.
    pub fn accept_proposal(&mut self) -> Option<usize> {
        let review = self.proposal.take()?;
        self.proposal_revision += 1;
        let ids = self.labels_for_classes(&review.proposal.classes);
        let proposed = review.proposal.labels(review.threshold);
        let new: Vec<u16> = self
            .labels
            .labels
            .iter()
            .zip(&proposed.labels)
            .map(|(&old, &p)| {
                if p == 0 {
                    old
                } else {
                    ids.get(p as usize).copied().unwrap_or(old)
                }
            })
            .collect();
        let step = self.replace_labels(&format!("Accept {}", review.model), &new);
        let changed = step.changes.len();
        self.undo.push(step);
        Some(changed)
    }

    /// Per proposal class (background left out): its name, voxels at the current threshold and
    /// their size (ml for volumes, mm² for 2-D images).
    pub fn proposal_sizes(&self) -> Vec<(String, usize, f64)> {
        let Some(r) = &self.proposal else {
            return Vec::new();
        };
        let sp = self.image.geometry.spacing_mm;
        let unit = if self.is_2d() {
            sp[0] * sp[1]
        } else {
            self.voxel_ml()
        };
        r.counts
            .iter()
            .enumerate()
            .skip(1)
            .map(|(c, &n)| {
                let name = r
                    .proposal
                    .classes
                    .get(c)
                    .cloned()
                    .unwrap_or(format!("class {c}"));
                (name, n, n as f64 * unit)
            })
            .collect()
    }

    pub fn undo(&mut self) -> Option<String> {
        self.step_history(false)
    }

    pub fn redo(&mut self) -> Option<String> {
        self.step_history(true)
    }

    /// Undoes or redoes one step; counts, the GPU's dirty box and the label table follow the
    /// step's own changes (its size, not the volume's).
    fn step_history(&mut self, redo: bool) -> Option<String> {
        let mut labels = std::mem::take(&mut self.labels.labels);
        let step = if redo {
            self.undo.redo(&mut labels)
        } else {
            self.undo.undo(&mut labels)
        };
        let Some((name, changes)) = step else {
            self.labels.labels = labels;
            return None;
        };
        let [nx, ny, _] = self.image.geometry.dims;
        let mut appeared = Vec::new();
        for c in changes {
            let (from, to) = if redo { (c.old, c.new) } else { (c.new, c.old) };
            self.counts[from as usize] -= 1;
            if self.counts.len() <= to as usize {
                self.counts.resize(to as usize + 1, 0);
            }
            self.counts[to as usize] += 1;
            let i = c.index as usize;
            DirtyBox::add(&mut self.dirty, [i % nx, (i / nx) % ny, i / (nx * ny)]);
            if to != 0 && !appeared.contains(&to) {
                appeared.push(to);
            }
        }
        self.labels.labels = labels;
        self.generation += 1;
        self.unsaved = true;
        for l in appeared {
            self.ensure_label(l);
        }
        Some(name)
    }

    /// Paints a disc of `radius_mm` (in the plane's millimetres) centred on the continuous voxel
    /// coordinate `centre` into the slice `centre` lies in, with `value` (0 = erase). Moving from
    /// the stroke's previous point fills the gap between them.
    pub fn brush(
        &mut self,
        axes: PlaneAxes,
        centre: [f64; 3],
        radius_mm: f64,
        value: u16,
        stroke: &mut Stroke,
    ) {
        let sp = self.image.geometry.spacing_mm;
        let from = stroke.last.unwrap_or(centre);
        let du = (centre[axes.u] - from[axes.u]) * sp[axes.u];
        let dv = (centre[axes.v] - from[axes.v]) * sp[axes.v];
        let dist = (du * du + dv * dv).sqrt();
        let steps = (dist / (0.5 * radius_mm.max(1e-3))).ceil().max(1.0) as usize;
        for s in 1..=steps {
            let t = s as f64 / steps as f64;
            let mut p = centre;
            p[axes.u] = from[axes.u] + t * (centre[axes.u] - from[axes.u]);
            p[axes.v] = from[axes.v] + t * (centre[axes.v] - from[axes.v]);
            self.stamp(axes, p, radius_mm, value, stroke);
        }
        stroke.last = Some(centre);
    }

    fn stamp(
        &mut self,
        axes: PlaneAxes,
        c: [f64; 3],
        radius_mm: f64,
        value: u16,
        stroke: &mut Stroke,
    ) {
        let dims = self.dims();
        let sp = self.image.geometry.spacing_mm;
        let slice = c[axes.n].floor();
        if slice < 0.0 || slice >= dims[axes.n] as f64 {
            return;
        }
        let ru = radius_mm / sp[axes.u];
        let rv = radius_mm / sp[axes.v];
        let clamp = |x: f64, n: usize| x.max(0.0).min(n as f64) as usize;
        let (u0, u1) = (
            clamp((c[axes.u] - ru).floor(), dims[axes.u]),
            clamp((c[axes.u] + ru).ceil(), dims[axes.u]),
        );
        let (v0, v1) = (
            clamp((c[axes.v] - rv).floor(), dims[axes.v]),
            clamp((c[axes.v] + rv).ceil(), dims[axes.v]),
        );
        let r2 = radius_mm * radius_mm;
        for j in v0..v1 {
            for i in u0..u1 {
                let du = (i as f64 + 0.5 - c[axes.u]) * sp[axes.u];
                let dv = (j as f64 + 0.5 - c[axes.v]) * sp[axes.v];
                if du * du + dv * dv > r2 {
                    continue;
                }
                let mut v = [0usize; 3];
                v[axes.u] = i;
                v[axes.v] = j;
                v[axes.n] = slice as usize;
                let index = self.image.index(v[0], v[1], v[2]);
                let old = self.labels.labels[index];
                if old != value {
                    stroke.old.entry(index as u32).or_insert(old);
                    self.set_voxel(index, value);
                }
            }
        }
        if value != 0 {
            self.ensure_label(value);
        }
    }

    /// Ends a stroke: its changes become one undo step.
    pub fn finish_stroke(&mut self, name: &str, stroke: Stroke) {
        let mut changes: Vec<Change> = stroke
            .old
            .into_iter()
            .filter_map(|(index, old)| {
                let new = self.labels.labels[index as usize];
                (new != old).then_some(Change { index, old, new })
            })
            .collect();
        changes.sort_by_key(|c| c.index);
        if !changes.is_empty() {
            self.unsaved = true;
        }
        self.undo.push(Step {
            name: name.to_string(),
            changes,
        });
    }

    /// The intensity at a voxel (first channel; all three for RGB).
    pub fn value_at(&self, v: [usize; 3]) -> Vec<f32> {
        let i = self.image.index(v[0], v[1], v[2]) * self.image.channels;
        self.image.voxels[i..i + self.image.channels].to_vec()
    }

    pub fn label_at(&self, v: [usize; 3]) -> u16 {
        self.labels.labels[self.image.index(v[0], v[1], v[2])]
    }
}

/// Where a plane's image lies on screen and how screen points map to voxels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewMapping {
    pub axes: PlaneAxes,
    /// Slice index along `axes.n`.
    pub slice: usize,
    pub dims: [usize; 3],
    /// The whole slice's rectangle on screen, in points: [min x, min y, max x, max y].
    pub image_rect: [f32; 4],
}

impl ViewMapping {
    /// Fits the slice into `widget` ([min x, min y, max x, max y], points) keeping the true aspect
    /// from the spacing, scaled by `zoom` and moved by `pan` (points).
    pub fn new(
        doc: &Document,
        plane: Plane,
        widget: [f32; 4],
        zoom: f32,
        pan: [f32; 2],
    ) -> ViewMapping {
        let axes = plane_axes(&doc.image, plane);
        let dims = doc.dims();
        let sp = doc.image.geometry.spacing_mm;
        let w_mm = (dims[axes.u] as f64 * sp[axes.u]) as f32;
        let h_mm = (dims[axes.v] as f64 * sp[axes.v]) as f32;
        let (ww, wh) = (widget[2] - widget[0], widget[3] - widget[1]);
        let scale = zoom * (ww / w_mm).min(wh / h_mm);
        let (cx, cy) = (
            0.5 * (widget[0] + widget[2]) + pan[0],
            0.5 * (widget[1] + widget[3]) + pan[1],
        );
        let (hw, hh) = (0.5 * w_mm * scale, 0.5 * h_mm * scale);
        ViewMapping {
            axes,
            slice: doc.cursor[axes.n],
            dims,
            image_rect: [cx - hw, cy - hh, cx + hw, cy + hh],
        }
    }

    /// Continuous voxel coordinate under a screen point (voxel centres at i + 0.5).
    pub fn voxel_at(&self, x: f32, y: f32) -> [f64; 3] {
        let r = self.image_rect;
        let mut fu = ((x - r[0]) / (r[2] - r[0])) as f64;
        let mut fv = ((y - r[1]) / (r[3] - r[1])) as f64;
        if self.axes.flip_u {
            fu = 1.0 - fu;
        }
        if self.axes.flip_v {
            fv = 1.0 - fv;
        }
        let mut p = [0.0; 3];
        p[self.axes.u] = fu * self.dims[self.axes.u] as f64;
        p[self.axes.v] = fv * self.dims[self.axes.v] as f64;
        p[self.axes.n] = self.slice as f64 + 0.5;
        p
    }

    /// The voxel under a screen point, if inside the volume.
    pub fn voxel_index_at(&self, x: f32, y: f32) -> Option<[usize; 3]> {
        let p = self.voxel_at(x, y);
        let mut v = [0usize; 3];
        for a in 0..3 {
            if !(p[a] >= 0.0 && p[a] < self.dims[a] as f64) {
                return None;
            }
            v[a] = p[a] as usize;
        }
        Some(v)
    }

    /// Screen point of a continuous voxel coordinate (its in-plane components).
    pub fn screen_of(&self, p: [f64; 3]) -> [f32; 2] {
        let r = self.image_rect;
        let mut fu = (p[self.axes.u] / self.dims[self.axes.u] as f64) as f32;
        let mut fv = (p[self.axes.v] / self.dims[self.axes.v] as f64) as f32;
        if self.axes.flip_u {
            fu = 1.0 - fu;
        }
        if self.axes.flip_v {
            fv = 1.0 - fv;
        }
        [r[0] + fu * (r[2] - r[0]), r[1] + fv * (r[3] - r[1])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseg_data::geometry::Geometry;
    use medseg_data::volume::Source;

    fn volume(dims: [usize; 3], affine: [[f64; 4]; 4]) -> Volume {
        Volume {
            geometry: Geometry::from_affine(dims, affine),
            channels: 1,
            voxels: (0..dims.iter().product::<usize>())
                .map(|i| i as f32)
                .collect(),
            source: Source {
                path: "t.nii".into(),
                format: Format::Nifti1,
                datatype: "float32".into(),
                modality: None,
                nifti: None,
                notes: vec![],
            },
        }
    }

    const RAS: [[f64; 4]; 4] = [
        [2.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 3.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];

    #[test]
    fn planes_follow_radiological_convention() {
        let v = volume([4, 5, 6], RAS);
        let a = plane_axes(&v, Plane::Axial);
        assert_eq!((a.u, a.flip_u, a.v, a.flip_v, a.n), (0, true, 1, true, 2));
        assert_eq!(a.letters, Some(['R', 'L', 'A', 'P']));
        let c = plane_axes(&v, Plane::Coronal);
        assert_eq!((c.u, c.flip_u, c.v, c.flip_v, c.n), (0, true, 2, true, 1));
        assert_eq!(c.letters, Some(['R', 'L', 'S', 'I']));
        let s = plane_axes(&v, Plane::Sagittal);
        assert_eq!((s.u, s.flip_u, s.v, s.flip_v, s.n), (1, true, 2, true, 0));
        assert_eq!(s.letters, Some(['A', 'P', 'S', 'I']));
        // LPS storage (DICOM-like, after conversion x and y point the other way): no flips.
        let mut lps = RAS;
        lps[0][0] = -2.0;
        lps[1][1] = -1.0;
        let a = plane_axes(&volume([4, 5, 6], lps), Plane::Axial);
        assert_eq!((a.flip_u, a.flip_v), (false, false));
    }

    #[test]
    fn mapping_round_trips_and_keeps_aspect() {
        let doc = Document::new(volume([4, 5, 6], RAS));
        // Axial: 4 voxels × 2 mm wide, 5 × 1 mm tall → 8:5.
        let m = ViewMapping::new(
            &doc,
            Plane::Axial,
            [0.0, 0.0, 160.0, 160.0],
            1.0,
            [0.0, 0.0],
        );
        let r = m.image_rect;
        assert!(((r[2] - r[0]) / (r[3] - r[1]) - 1.6).abs() < 1e-5);
        let p = [1.25, 3.5, doc.cursor[2] as f64 + 0.5];
        let s = m.screen_of(p);
        let q = m.voxel_at(s[0], s[1]);
        for a in 0..3 {
            assert!((p[a] - q[a]).abs() < 1e-4, "{p:?} vs {q:?}");
        }
        // Right edge of the screen is voxel x = 0 (patient left is high x in RAS).
        let v = m.voxel_index_at(r[2] - 0.1, r[1] + 0.1).unwrap();
        assert_eq!((v[0], v[1]), (0, 4));
    }

    #[test]
    fn brush_paints_a_disc_in_mm_and_undo_takes_it_back() {
        let mut doc = Document::new(volume([20, 20, 3], RAS));
        let axes = plane_axes(&doc.image, Plane::Axial);
        let mut stroke = Stroke::default();
        // Centre of voxel (10, 10, 1); radius 4 mm: 2 voxels along x (2 mm), 4 along y (1 mm).
        doc.brush(axes, [10.5, 10.5, 1.5], 4.0, 2, &mut stroke);
        doc.finish_stroke("Brush", stroke);
        let painted: Vec<[usize; 3]> = (0..doc.labels.labels.len())
            .filter(|&i| doc.labels.labels[i] == 2)
            .map(|i| doc.coords(i))
            .collect();
        let expected = (0..20)
            .flat_map(|y| (0..20).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let dx = (x as f64 - 10.0) * 2.0;
                let dy = y as f64 - 10.0;
                dx * dx + dy * dy <= 16.0
            })
            .count();
        assert_eq!(painted.len(), expected);
        assert!(painted.iter().all(|v| v[2] == 1));
        assert_eq!(doc.count(2), expected as u64);
        assert!(doc.unsaved);
        assert_eq!(doc.undo().as_deref(), Some("Brush"));
        assert_eq!(doc.count(2), 0);
        assert!(doc.labels.labels.iter().all(|&l| l == 0));
        doc.redo();
        assert_eq!(doc.count(2), expected as u64);
    }

    /// A proposal is re-thresholded without touching the labels; Accept is one undo step that
    /// keeps existing labels outside the proposal, names the label after the class, and undo
    /// restores the labels exactly.
    #[test]
    fn proposal_review_accepts_as_one_undo_step() {
        let mut doc = Document::new(volume([4, 1, 2], RAS));
        // An existing label 3 on voxel 7 and 0.
        let mut start = vec![0u16; 8];
        start[7] = 3;
        start[0] = 3;
        let step = doc.replace_labels("Open labels", &start);
        doc.undo.push(step);
        doc.ensure_label(3);
        let mut p = Proposal::new(
            doc.image.geometry.clone(),
            vec!["background".into(), "polyp".into()],
        );
        let probs = [0.9, 0.2, 0.6, 0.4, 0.0, 0.7, 1.0, 0.1];
        p.set_from_probabilities(&probs, 1, 8, &mut |i| i);
        let before = doc.labels.labels.clone();
        doc.propose(p, "Polyp (test)").unwrap();
        assert_eq!(
            doc.labels.labels, before,
            "a proposal leaves the labels alone"
        );
        let sizes = doc.proposal_sizes();
        assert_eq!(sizes[0].0, "polyp");
        assert_eq!(sizes[0].1, 4);
        // 2 × 1 × 3 mm voxels = 0.006 ml each.
        assert!((sizes[0].2 - 4.0 * 0.006).abs() < 1e-12);
        doc.set_threshold(0.65);
        assert_eq!(doc.proposal_sizes()[0].1, 3);
        assert_eq!(doc.accept_proposal(), Some(3));
        assert!(doc.proposal.is_none());
        let polyp = doc
            .label_info
            .iter()
            .find(|l| l.name == "polyp")
            .unwrap()
            .id;
        // Voxel 0 (0.9) moves from label 3 to polyp; 5 (0.7), 6 (1.0) become polyp; 2 (0.6) is
        // below 0.65; voxel 7 keeps its 3.
        let mut want = start.clone();
        want[0] = polyp;
        want[5] = polyp;
        want[6] = polyp;
        assert_eq!(doc.labels.labels, want);
        assert_eq!(doc.undo().as_deref(), Some("Accept Polyp (test)"));
        assert_eq!(doc.labels.labels, start);
        doc.redo();
        assert_eq!(doc.labels.labels, want);
        // Reject drops a proposal without a step.
        let p = Proposal::new(
            doc.image.geometry.clone(),
            vec!["background".into(), "polyp".into()],
        );
        doc.propose(p, "m").unwrap();
        doc.reject_proposal();
        assert!(doc.proposal.is_none());
        assert_eq!(doc.labels.labels, want);
        let wrong = Proposal::new(
            Geometry::axis_aligned([2, 2, 2], [1.0; 3]),
            vec!["b".into(), "f".into()],
        );
        assert!(doc.propose(wrong, "m").is_err());
    }

    #[test]
    fn labels_on_another_grid_are_refused() {
        let mut doc = Document::new(volume([4, 5, 6], RAS));
        let other = LabelMap::new(Geometry::from_affine([4, 5, 7], RAS));
        let e = doc
            .set_labels(other, "m.nii".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        assert!(doc.labels.labels.iter().all(|&l| l == 0));
    }
}
