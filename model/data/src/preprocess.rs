//! Preprocessing: resizing (bilinear for images, nearest for labels), per-modality intensity
//! normalisation, and the official training augmentations with a seeded generator.

use serde::{Deserialize, Serialize};

/// Small deterministic generator (SplitMix64): the same seed gives the same augmentations and
/// splits on every platform, wasm included.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The generator's state (to continue the same sequence later with [`SeededRng::new`]).
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Bilinear resize of an interleaved image (`channels` per pixel) with pixel centres at +0.5
/// (PyTorch `align_corners=False`, OpenCV `INTER_LINEAR` without antialiasing).
pub fn resize_bilinear(
    src: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    nw: usize,
    nh: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; nw * nh * channels];
    let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
    let coord = |d: usize, scale: f64, n: usize| {
        let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, (s - i0 as f64) as f32)
    };
    for y in 0..nh {
        let (y0, y1, fy) = coord(y, sy, h);
        for x in 0..nw {
            let (x0, x1, fx) = coord(x, sx, w);
            for c in 0..channels {
                let p = |xx: usize, yy: usize| src[(yy * w + xx) * channels + c];
                let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
                let bot = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
                out[(y * nw + x) * channels + c] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

/// Nearest-neighbour resize of labels (PyTorch `mode="nearest"`: source index ⌊d · scale⌋).
pub fn resize_nearest<T: Copy>(src: &[T], w: usize, h: usize, nw: usize, nh: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(nw * nh);
    for y in 0..nh {
        let sy = ((y as f64 * h as f64 / nh as f64) as usize).min(h - 1);
        for x in 0..nw {
            let sx = ((x as f64 * w as f64 / nw as f64) as usize).min(w - 1);
            out.push(src[sy * w + sx]);
        }
    }
    out
}

/// Intensity normalisation per modality.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// CT: clip Hounsfield units to [lo, hi] and scale to [0, 1] (TransUNet/Synapse: −125..275).
    Ct { lo: f32, hi: f32 },
    /// MR: z-score over the foreground (non-zero voxels).
    MrZScore,
    /// RGB (ISIC, CVC): the official (x − mean)/std followed by per-image min–max to [0, 255];
    /// the min–max cancels the affine step, so this is 255 (x − min)/(max − min) over all channels.
    RgbMinMax255,
    /// Leave intensities as they are.
    None,
}

impl Normalization {
    pub const CT_ABDOMEN: Normalization = Normalization::Ct {
        lo: -125.0,
        hi: 275.0,
    };

    /// The default for a modality string ("CT", "MR", "RGB", ...).
    pub fn for_modality(modality: Option<&str>, channels: usize) -> Normalization {
        match modality {
            Some("CT") => Normalization::CT_ABDOMEN,
            Some("MR") => Normalization::MrZScore,
            _ if channels == 3 => Normalization::RgbMinMax255,
            _ => Normalization::MrZScore,
        }
    }

    pub fn apply(&self, x: &mut [f32]) {
        match *self {
            Normalization::Ct { lo, hi } => {
                let span = (hi - lo).max(f32::EPSILON);
                for v in x.iter_mut() {
                    *v = (v.clamp(lo, hi) - lo) / span;
                }
            }
            Normalization::MrZScore => {
                let (mean, std) = zscore_stats(x);
                for v in x.iter_mut() {
                    *v = ((*v as f64 - mean) / std) as f32;
                }
            }
            Normalization::RgbMinMax255 => {
                let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                for &v in x.iter() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                let span = hi - lo;
                for v in x.iter_mut() {
                    *v = if span > 0.0 {
                        255.0 * (*v - lo) / span
                    } else {
                        0.0
                    };
                }
            }
            Normalization::None => {}
        }
    }
}

/// Mean and standard deviation (at least 1e-8) of the non-zero finite values of `x` (all
/// values when none is non-zero): the statistics of [`Normalization::MrZScore`], which volumes
/// take over the whole volume rather than per slice.
pub fn zscore_stats(x: &[f32]) -> (f64, f64) {
    let fg: Vec<f64> = x
        .iter()
        .filter(|v| **v != 0.0 && v.is_finite())
        .map(|&v| v as f64)
        .collect();
    let src: Vec<f64> = if fg.is_empty() {
        x.iter().map(|&v| v as f64).collect()
    } else {
        fg
    };
    let n = src.len().max(1) as f64;
    let mean = src.iter().sum::<f64>() / n;
    let std = (src.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
        .sqrt()
        .max(1e-8);
    (mean, std)
}

/// A 2-D training sample: an interleaved image and a soft mask of one value per pixel and class
/// channel (binary masks have one channel with 0/1).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub image: Vec<f32>,
    /// Per-pixel target: one value per pixel (binary probability or class id as f32).
    pub mask: Vec<f32>,
}

fn remap<T: Copy + Default>(
    src: &[T],
    w: usize,
    h: usize,
    c: usize,
    f: impl Fn(usize, usize) -> Option<(usize, usize)>,
) -> Vec<T> {
    let mut out = vec![T::default(); src.len()];
    for y in 0..h {
        for x in 0..w {
            if let Some((sx, sy)) = f(x, y) {
                for k in 0..c {
                    out[(y * w + x) * c + k] = src[(sy * w + sx) * c + k];
                }
            }
        }
    }
    out
}

impl Sample {
    pub fn hflip(&mut self) {
        let (w, h) = (self.width, self.height);
        self.image = remap(&self.image, w, h, self.channels, |x, y| {
            Some((w - 1 - x, y))
        });
        self.mask = remap(&self.mask, w, h, 1, |x, y| Some((w - 1 - x, y)));
    }

    pub fn vflip(&mut self) {
        let (w, h) = (self.width, self.height);
        self.image = remap(&self.image, w, h, self.channels, |x, y| {
            Some((x, h - 1 - y))
        });
        self.mask = remap(&self.mask, w, h, 1, |x, y| Some((x, h - 1 - y)));
    }

    /// Rotates counter-clockwise by `degrees` about the image centre, nearest neighbour, zero
    /// fill, same size (torchvision `TF.rotate` defaults).
    pub fn rotate(&mut self, degrees: f64) {
        let (w, h) = (self.width, self.height);
        let (s, c) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        let map = |x: usize, y: usize| {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let sx = (dx * c - dy * s + cx).floor();
            let sy = (dx * s + dy * c + cy).floor();
            (sx >= 0.0 && sy >= 0.0 && sx < w as f64 && sy < h as f64)
                .then_some((sx as usize, sy as usize))
        };
        self.image = remap(&self.image, w, h, self.channels, map);
        self.mask = remap(&self.mask, w, h, 1, map);
    }

    /// Rotation by k·90° counter-clockwise (square images keep every pixel).
    pub fn rot90(&mut self, k: usize) {
        for _ in 0..k % 4 {
            let (w, h) = (self.width, self.height);
            let rot = |src: &[f32], c: usize| {
                let mut out = vec![0.0; src.len()];
                // New image is h wide and w high; new (x, y) takes old (w - 1 - y, x).
                for y in 0..w {
                    for x in 0..h {
                        for k in 0..c {
                            out[(y * h + x) * c + k] = src[(x * w + (w - 1 - y)) * c + k];
                        }
                    }
                }
                out
            };
            self.image = rot(&self.image, self.channels);
            self.mask = rot(&self.mask, 1);
            self.width = h;
            self.height = w;
        }
    }

    /// Bilinear resize of image and mask (the official pipeline resizes masks bilinearly too,
    /// giving soft targets at edges).
    pub fn resize(&mut self, nw: usize, nh: usize) {
        self.image = resize_bilinear(&self.image, self.width, self.height, self.channels, nw, nh);
        self.mask = resize_bilinear(&self.mask, self.width, self.height, 1, nw, nh);
        self.width = nw;
        self.height = nh;
    }
}

/// How the rotation angle is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RotationAngle {
    /// Drawn once per run (U[0, 360)), as the official transform does when it is constructed.
    PerRun(f64),
    /// Drawn for every sample.
    PerSample,
}

/// The official ISIC/CVC training augmentations: HFlip, VFlip, Rotate, each with probability p.
#[derive(Clone, Debug)]
pub struct Augment {
    pub p_hflip: f64,
    pub p_vflip: f64,
    pub p_rotate: f64,
    pub angle: RotationAngle,
    rng: SeededRng,
}

impl Augment {
    /// The official settings; the angle is drawn once from the seed (the official quirk).
    pub fn official(seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let angle = rng.next_f64() * 360.0;
        Augment {
            p_hflip: 0.5,
            p_vflip: 0.5,
            p_rotate: 0.5,
            angle: RotationAngle::PerRun(angle),
            rng,
        }
    }

    /// The random state (saved with a training checkpoint).
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    /// Continues from a saved random state.
    pub fn with_rng_state(mut self, state: u64) -> Self {
        self.rng = SeededRng::new(state);
        self
    }

    pub fn per_sample_angles(mut self) -> Self {
        self.angle = RotationAngle::PerSample;
        self
    }

    pub fn apply(&mut self, s: &mut Sample) {
        if self.rng.next_f64() < self.p_hflip {
            s.hflip();
        }
        if self.rng.next_f64() < self.p_vflip {
            s.vflip();
        }
        if self.rng.next_f64() < self.p_rotate {
            let a = match self.angle {
                RotationAngle::PerRun(a) => a,
                RotationAngle::PerSample => self.rng.next_f64() * 360.0,
            };
            s.rotate(a);
        }
    }
}

/// The Synapse (TransUNet-format) training augmentation: with p 0.5 a random rot90 (k ∈ 0..4)
/// and a flip along a random axis, otherwise with p 0.5 a rotation by an integer angle in
/// [−20, 19]° (nearest neighbour for image and label). Resizing to 224² follows separately.
#[derive(Clone, Debug)]
pub struct SynapseAugment {
    rng: SeededRng,
}

impl SynapseAugment {
    pub fn new(seed: u64) -> Self {
        SynapseAugment {
            rng: SeededRng::new(seed),
        }
    }

    pub fn apply(&mut self, s: &mut Sample) {
        if self.rng.next_f64() < 0.5 {
            s.rot90(self.rng.below(4));
            if self.rng.below(2) == 0 {
                s.vflip();
            } else {
                s.hflip();
            }
        } else if self.rng.next_f64() < 0.5 {
            let angle = self.rng.below(40) as f64 - 20.0;
            s.rotate(angle);
        }
    }
}

/// How an image must be prepared for a network: the input side it was trained at, its channel
/// count (grey images are repeated to three for an RGB network), the intensity normalisation, how
/// an image of another size is fitted to the network, and the names of its classes. Stored with
/// every checkpoint so inference prepares images exactly as training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Input side in pixels the network was trained at.
    pub size: usize,
    /// Channels the network takes.
    pub channels: usize,
    pub normalization: Normalization,
    pub fit: Fit,
    /// Class names, background first (a one-class sigmoid network has two: background and its
    /// foreground).
    pub classes: Vec<String>,
    /// The classes are background, interior and boundary of an instance map (cell nuclei,
    /// [`crate::instances`]): a prediction becomes instances again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instances: bool,
}

/// How an image whose size differs from the network's input is fitted to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// The whole image (each slice of a volume) is resized to `size`², as the reference protocol
    /// trains, and the probabilities are resized back.
    Resize,
    /// Sliding windows of `size`² over the image at its own resolution.
    Tiles,
}

impl InputSpec {
    /// What `medseg train` does: per-image min–max to [0, 255] over three channels (grey
    /// repeated), the whole image resized to `size`².
    pub fn reference(size: usize, classes: Vec<String>) -> Self {
        InputSpec {
            size,
            channels: 3,
            normalization: Normalization::RgbMinMax255,
            fit: Fit::Resize,
            classes,
            instances: false,
        }
    }

    /// Default class names for `k` output channels of a network (one sigmoid channel: a
    /// background and one foreground class).
    pub fn default_classes(k: usize) -> Vec<String> {
        if k <= 1 {
            vec!["background".into(), "foreground".into()]
        } else {
            std::iter::once("background".to_string())
                .chain((1..k).map(|i| format!("class {i}")))
                .collect()
        }
    }
}
