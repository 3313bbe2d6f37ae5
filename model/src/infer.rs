//! Inference API used by the app and the CLI: a network on a GPU device as a sliding-window
//! [`TileModel`], so any image or volume is segmented tile by tile (overlap, Gaussian weighting,
//! progress and cancel come from `medseg_data::sliding`).

use crate::nn::net::Net;
use burn::tensor::{Device, Tensor, TensorData};
use medseg_data::sliding::{predict_image, Progress, SlidingWindow, TileModel};

/// Rough device memory one 256² tile needs through a VM-UNet/SA-UMamba forward pass (the
/// stage-1 SS2D tensors dominate: (4 directions × 192 channels × 4096 positions) f32 each, about
/// a dozen alive at once). Scales with the tile area.
const BYTES_PER_256_TILE: u64 = 160 << 20;
/// Largest batch of tiles per call.
pub const MAX_TILE_BATCH: usize = 16;

/// A network ready to segment: square tiles of `tile` pixels, probabilities out (sigmoid for one
/// class, softmax over classes otherwise; USEMA: its full-resolution output).
pub struct Segmenter {
    net: Net,
    device: Device,
    tile: usize,
    max_batch: usize,
}

/// Tiles per call that fit in `memory_budget` bytes (at least 1, at most [`MAX_TILE_BATCH`]).
pub fn batch_for_budget(tile: usize, memory_budget: u64) -> usize {
    let per_tile = (BYTES_PER_256_TILE as f64 * (tile as f64 / 256.0).powi(2)).max(1.0);
    ((memory_budget as f64 / per_tile) as usize).clamp(1, MAX_TILE_BATCH)
}

impl Segmenter {
    /// `tile` must be a positive multiple of the network's stride (32; USEMA 2^(stages−1));
    /// `memory_budget` is the device memory the caller lets inference use, which sets the tile
    /// batch.
    pub fn new(
        net: impl Into<Net>,
        device: Device,
        tile: usize,
        memory_budget: u64,
    ) -> Result<Self, String> {
        let net = net.into();
        let stride = net.config().stride();
        if tile == 0 || !tile.is_multiple_of(stride) {
            return Err(format!(
                "the tile size must be a positive multiple of {stride} for {}, is {tile}",
                net.config().name()
            ));
        }
        Ok(Segmenter {
            net,
            device,
            tile,
            max_batch: batch_for_budget(tile, memory_budget),
        })
    }

    pub fn classes(&self) -> usize {
        self.net.classes()
    }

    /// Fewer tiles per call (after the GPU failed at the current batch).
    pub fn set_max_batch(&mut self, batch: usize) {
        self.max_batch = batch.max(1);
    }

    /// Class probabilities (classes × h × w) of an interleaved (h × w × channels), normalised image.
    pub async fn predict_async(
        &mut self,
        image: &[f32],
        width: usize,
        height: usize,
        opts: &SlidingWindow,
        progress: Progress<'_>,
    ) -> Result<Vec<f32>, String> {
        predict_image(self, image, width, height, opts, progress)
            .await
            .map_err(|e| e.to_string())
    }

    /// [`Segmenter::predict_async`], waiting for the GPU (not in the browser, whose main thread
    /// cannot wait).
    pub fn predict(
        &mut self,
        image: &[f32],
        width: usize,
        height: usize,
        opts: &SlidingWindow,
        progress: Progress<'_>,
    ) -> Result<Vec<f32>, String> {
        pollster::block_on(self.predict_async(image, width, height, opts, progress))
    }
}

impl TileModel for Segmenter {
    fn tile_size(&self) -> (usize, usize) {
        (self.tile, self.tile)
    }

    fn in_channels(&self) -> usize {
        self.net.in_channels()
    }

    fn out_channels(&self) -> usize {
        self.net.classes()
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn predict(&mut self, tiles: &[f32], batch: usize) -> Result<Vec<f32>, String> {
        let (c, t) = (self.net.in_channels(), self.tile);
        if tiles.len() != batch * c * t * t {
            return Err(format!(
                "{} values for {batch} tile(s) of {c}×{t}×{t}",
                tiles.len()
            ));
        }
        if let Some(i) = tiles.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "the input holds a non-finite value ({}) at {i}",
                tiles[i]
            ));
        }
        let (net, device) = (&mut self.net, &self.device);
        let x =
            || Tensor::<4>::from_data(TensorData::new(tiles.to_vec(), [batch, c, t, t]), device);
        let values = |data: TensorData| {
            data.convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading the probabilities back failed: {e:?}"))
        };
        // The runtime reports out-of-memory and device loss by panicking; keep that a typed
        // failure of this call (the caller retries with fewer tiles or reports it).
        #[cfg(not(target_arch = "wasm32"))]
        {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                values(net.probabilities(x())?.into_data())
            }));
            run.unwrap_or_else(|panic| {
                let msg = crate::gpu::panic_message(panic.as_ref());
                Err(format!("{batch} tile(s) of {t}²: {msg}"))
            })
        }
        // In the browser the read must not block; a panic there cannot be caught anyway.
        #[cfg(target_arch = "wasm32")]
        {
            let probs = net.probabilities(x())?;
            let data = probs
                .into_data_async()
                .await
                .map_err(|e| format!("{batch} tile(s) of {t}²: {e:?}"))?;
            values(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_batch_follows_the_memory_budget() {
        assert_eq!(batch_for_budget(256, 2 << 30), 12);
        assert_eq!(batch_for_budget(256, 1 << 20), 1, "never zero");
        assert_eq!(batch_for_budget(256, 1 << 40), MAX_TILE_BATCH);
        assert_eq!(
            batch_for_budget(512, 2 << 30),
            3,
            "four times the area, a quarter the batch"
        );
    }
}
