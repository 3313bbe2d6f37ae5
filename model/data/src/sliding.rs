//! Sliding-window inference for images of any size: tiles of the network's input size with
//! overlap, Gaussian importance weighting, tiles batched, volumes slice by slice along a chosen
//! axis. Memory is bounded by one slice's class probabilities, whatever the volume size.

use crate::error::{DataError, Result};
use crate::volume::{LabelMap, Volume};

/// Anything that maps a batch of tiles to class probabilities. `predict` is async so a network
/// can read its results back without blocking (the browser's main thread cannot block); a
/// model that computes at once just returns.
// No `Send` bound on the futures: they are awaited where they are made (a worker thread's
// `block_on`, or the browser's event loop).
#[allow(async_fn_in_trait)]
pub trait TileModel {
    /// Network input (width, height).
    fn tile_size(&self) -> (usize, usize);
    fn in_channels(&self) -> usize;
    /// Output channels (1 for a sigmoid binary network, K for softmax).
    fn out_channels(&self) -> usize;
    /// Most tiles per call (chosen from the device's memory by the caller).
    fn max_batch(&self) -> usize;
    /// `tiles`: batch × in_channels × h × w (NCHW). Returns batch × out_channels × h × w
    /// probabilities.
    async fn predict(
        &mut self,
        tiles: &[f32],
        batch: usize,
    ) -> std::result::Result<Vec<f32>, String>;
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindow {
    /// Fraction of a tile shared with its neighbour (0 ≤ overlap < 1; default 0.5).
    pub overlap: f64,
    /// Gaussian σ as a fraction of the tile size (default 1/8, as nnU-Net).
    pub sigma_scale: f64,
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow {
            overlap: 0.5,
            sigma_scale: 0.125,
        }
    }
}

/// Tile origins along an axis of `size` for tiles of `tile`, evenly spread, first at 0 and last
/// flush with the end, neighbours at most tile·(1 − overlap) apart.
pub fn tile_starts(size: usize, tile: usize, overlap: f64) -> Vec<usize> {
    if size <= tile {
        return vec![0];
    }
    let step = ((tile as f64) * (1.0 - overlap)).max(1.0);
    let n = ((size - tile) as f64 / step).ceil() as usize + 1;
    (0..n)
        .map(|i| ((i as f64) * (size - tile) as f64 / (n - 1) as f64).round() as usize)
        .collect()
}

/// Gaussian importance map of a tile (max 1, never 0).
pub fn importance_map(w: usize, h: usize, sigma_scale: f64) -> Vec<f32> {
    let g = |n: usize| -> Vec<f64> {
        let c = (n as f64 - 1.0) / 2.0;
        let s = (n as f64 * sigma_scale).max(1e-6);
        (0..n)
            .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * s * s)).exp())
            .collect()
    };
    let (gx, gy) = (g(w), g(h));
    let mut m: Vec<f32> = gy
        .iter()
        .flat_map(|&a| gx.iter().map(move |&b| (a * b) as f32))
        .collect();
    let max = m.iter().cloned().fold(0.0f32, f32::max);
    let min_pos = m
        .iter()
        .cloned()
        .filter(|v| *v > 0.0)
        .fold(f32::INFINITY, f32::min);
    for v in m.iter_mut() {
        *v = (*v / max).max(min_pos / max);
    }
    m
}

/// Callback: (done, total) → keep going?
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// Class probabilities (out_channels × h × w, channel-major) of one 2-D image given interleaved
/// (h × w × channels) and already normalised.
pub async fn predict_image<M: TileModel + ?Sized>(
    model: &mut M,
    image: &[f32],
    w: usize,
    h: usize,
    opts: &SlidingWindow,
    progress: Progress<'_>,
) -> Result<Vec<f32>> {
    let cin = model.in_channels();
    let cout = model.out_channels();
    if image.len() != w * h * cin {
        return Err(DataError::Mismatch(format!(
            "image holds {} values, {w}×{h} with {cin} channel(s) needs {}",
            image.len(),
            w * h * cin
        )));
    }
    if !(0.0..1.0).contains(&opts.overlap) {
        return Err(DataError::Invalid(format!(
            "overlap must be in [0, 1), is {}",
            opts.overlap
        )));
    }
    let (tw, th) = model.tile_size();
    let weights = importance_map(tw, th, opts.sigma_scale);
    let xs = tile_starts(w, tw, opts.overlap);
    let ys = tile_starts(h, th, opts.overlap);
    let tiles: Vec<(usize, usize)> = ys
        .iter()
        .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
        .collect();
    let total = tiles.len();
    let mut acc = vec![0.0f32; cout * w * h];
    let mut norm = vec![0.0f32; w * h];
    let batch = model.max_batch().max(1);
    let mut done = 0;
    for chunk in tiles.chunks(batch) {
        if !progress(done, total) {
            return Err(DataError::Cancelled);
        }
        // Gather NCHW tiles; parts outside the image (small images) are zero.
        let mut input = vec![0.0f32; chunk.len() * cin * th * tw];
        for (b, &(x0, y0)) in chunk.iter().enumerate() {
            for ty in 0..th.min(h - y0) {
                for tx in 0..tw.min(w - x0) {
                    let src = ((y0 + ty) * w + (x0 + tx)) * cin;
                    for c in 0..cin {
                        input[((b * cin + c) * th + ty) * tw + tx] = image[src + c];
                    }
                }
            }
        }
        let out = model
            .predict(&input, chunk.len())
            .await
            .map_err(DataError::Invalid)?;
        if out.len() != chunk.len() * cout * th * tw {
            return Err(DataError::Mismatch(format!(
                "the model returned {} values for {} tile(s) of {cout}×{th}×{tw}",
                out.len(),
                chunk.len()
            )));
        }
        for (b, &(x0, y0)) in chunk.iter().enumerate() {
            for ty in 0..th.min(h - y0) {
                for tx in 0..tw.min(w - x0) {
                    let wt = weights[ty * tw + tx];
                    let p = (y0 + ty) * w + (x0 + tx);
                    norm[p] += wt;
                    for c in 0..cout {
                        acc[c * w * h + p] += wt * out[((b * cout + c) * th + ty) * tw + tx];
                    }
                }
            }
        }
        done += chunk.len();
    }
    progress(total, total);
    for c in 0..cout {
        for p in 0..w * h {
            acc[c * w * h + p] /= norm[p];
        }
    }
    Ok(acc)
}

/// Labels from probabilities: threshold 0.5 for one channel, argmax for several.
pub fn labels_from_probabilities(probs: &[f32], channels: usize, pixels: usize) -> Vec<u16> {
    (0..pixels)
        .map(|p| {
            if channels == 1 {
                (probs[p] >= 0.5) as u16
            } else {
                let mut best = 0;
                for c in 1..channels {
                    if probs[c * pixels + p] > probs[best * pixels + p] {
                        best = c;
                    }
                }
                best as u16
            }
        })
        .collect()
}

/// Plane axes (in-plane width axis, height axis) when slicing across `axis`.
fn plane_axes(axis: usize) -> (usize, usize) {
    match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

/// Segments a volume slice by slice across `axis` (2 = axial for an RAS/LPS-like volume).
/// `prepare` turns each extracted slice (interleaved, in-plane width × height) into the model's
/// normalised input in place; `on_slice` sees each slice's probabilities before they are dropped.
pub async fn predict_volume<M: TileModel + ?Sized>(
    model: &mut M,
    volume: &Volume,
    axis: usize,
    opts: &SlidingWindow,
    prepare: &mut dyn FnMut(&mut [f32]),
    on_slice: &mut dyn FnMut(usize, &[f32]),
    progress: Progress<'_>,
) -> Result<LabelMap> {
    if axis > 2 {
        return Err(DataError::Invalid(format!(
            "slice axis must be 0, 1 or 2, is {axis}"
        )));
    }
    let c = volume.channels;
    if c != model.in_channels() {
        return Err(DataError::Mismatch(format!(
            "the volume has {c} channel(s), the model takes {}",
            model.in_channels()
        )));
    }
    let dims = volume.geometry.dims;
    let (ua, va) = plane_axes(axis);
    let (w, h, n) = (dims[ua], dims[va], dims[axis]);
    let mut out = LabelMap::for_image(volume);
    let cout = model.out_channels();
    let mut slice = vec![0.0f32; w * h * c];
    for s in 0..n {
        if !progress(s, n) {
            return Err(DataError::Cancelled);
        }
        let mut idx = [0usize; 3];
        idx[axis] = s;
        for v in 0..h {
            idx[va] = v;
            for u in 0..w {
                idx[ua] = u;
                let src = volume.index(idx[0], idx[1], idx[2]) * c;
                slice[(v * w + u) * c..(v * w + u + 1) * c]
                    .copy_from_slice(&volume.voxels[src..src + c]);
            }
        }
        prepare(&mut slice);
        let probs = predict_image(model, &slice, w, h, opts, &mut |_, _| true).await?;
        on_slice(s, &probs);
        let labels = labels_from_probabilities(&probs, cout, w * h);
        for v in 0..h {
            idx[va] = v;
            for u in 0..w {
                idx[ua] = u;
                let dst = volume.index(idx[0], idx[1], idx[2]);
                out.labels[dst] = labels[v * w + u];
            }
        }
    }
    progress(n, n);
    Ok(out)
}
