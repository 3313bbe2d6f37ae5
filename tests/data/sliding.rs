//! Sliding-window inference: weights normalise, tiles cover, volumes go slice by slice.

use medseg_data::geometry::Geometry;
use medseg_data::sliding::*;
use medseg_data::volume::{Format, Source, Volume};
use medseg_data::DataError;
use pollster::block_on;

/// Returns a constant per class, or (when `echo`) its first input channel as class 0.
struct Fake {
    tile: (usize, usize),
    cin: usize,
    cout: usize,
    echo: bool,
    calls: usize,
    max_batch: usize,
}

impl Fake {
    fn new(tile: usize, cin: usize, cout: usize, echo: bool, max_batch: usize) -> Self {
        Fake {
            tile: (tile, tile),
            cin,
            cout,
            echo,
            calls: 0,
            max_batch,
        }
    }
}

impl TileModel for Fake {
    fn tile_size(&self) -> (usize, usize) {
        self.tile
    }
    fn in_channels(&self) -> usize {
        self.cin
    }
    fn out_channels(&self) -> usize {
        self.cout
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    async fn predict(&mut self, tiles: &[f32], batch: usize) -> Result<Vec<f32>, String> {
        self.calls += 1;
        assert!(batch <= self.max_batch);
        let (w, h) = self.tile;
        let mut out = vec![0.0; batch * self.cout * w * h];
        for b in 0..batch {
            for c in 0..self.cout {
                for p in 0..w * h {
                    out[(b * self.cout + c) * w * h + p] = if self.echo {
                        tiles[(b * self.cin) * w * h + p] + c as f32
                    } else {
                        0.25 + 0.5 * c as f32
                    };
                }
            }
        }
        Ok(out)
    }
}

#[test]
fn constant_model_gives_the_constant_everywhere() {
    for (w, h) in [(100, 37), (16, 16), (5, 9), (64, 200)] {
        let mut m = Fake::new(16, 3, 2, false, 4);
        let img = vec![1.0; w * h * 3];
        let p = block_on(predict_image(
            &mut m,
            &img,
            w,
            h,
            &SlidingWindow::default(),
            &mut |_, _| true,
        ))
        .unwrap();
        assert_eq!(p.len(), 2 * w * h);
        for (i, v) in p.iter().enumerate() {
            let want = if i < w * h { 0.25 } else { 0.75 };
            assert!((v - want).abs() < 1e-6, "{w}×{h} index {i}: {v}");
        }
    }
}

#[test]
fn echo_model_reproduces_the_image() {
    let (w, h) = (53, 41);
    let img: Vec<f32> = (0..w * h)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    let mut m = Fake::new(16, 1, 1, true, 3);
    let p = block_on(predict_image(
        &mut m,
        &img,
        w,
        h,
        &SlidingWindow {
            overlap: 0.25,
            sigma_scale: 0.125,
        },
        &mut |_, _| true,
    ))
    .unwrap();
    for (a, b) in p.iter().zip(&img) {
        assert!((a - b).abs() < 1e-5);
    }
    let tiles = tile_starts(w, 16, 0.25).len() * tile_starts(h, 16, 0.25).len();
    assert_eq!(m.calls, tiles.div_ceil(3), "tiles are batched");
}

#[test]
fn tile_starts_cover_with_the_requested_overlap() {
    for (size, tile, overlap) in [
        (256, 256, 0.5),
        (300, 256, 0.5),
        (1000, 224, 0.5),
        (1000, 224, 0.0),
        (17, 4, 0.75),
    ] {
        let s = tile_starts(size, tile, overlap);
        assert_eq!(s[0], 0);
        assert_eq!(*s.last().unwrap() + tile, size.max(tile));
        for pair in s.windows(2) {
            let step = pair[1] - pair[0];
            assert!(
                step > 0 && step as f64 <= tile as f64 * (1.0 - overlap) + 1.0,
                "{size} {tile} {overlap}: {s:?}"
            );
        }
    }
}

#[test]
fn importance_map_peaks_in_the_centre_and_is_never_zero() {
    let m = importance_map(32, 32, 0.125);
    let max = m.iter().cloned().fold(0.0, f32::max);
    assert!((max - 1.0).abs() < 1e-6);
    assert!(m.iter().all(|&v| v > 0.0));
    assert!(m[16 * 32 + 16] > m[0]);
}

#[test]
fn volumes_are_segmented_slice_by_slice_along_any_axis() {
    let dims = [9, 7, 5];
    let n: usize = dims.iter().product();
    let voxels: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 / 6.0).collect();
    let vol = Volume {
        geometry: Geometry::axis_aligned(dims, [1.0, 1.0, 2.0]),
        channels: 1,
        voxels: voxels.clone(),
        source: Source {
            path: "v".into(),
            format: Format::Nifti1,
            datatype: "float32".into(),
            modality: None,
            nifti: None,
            notes: vec![],
        },
    };
    for axis in 0..3 {
        let mut m = Fake::new(4, 1, 1, true, 8);
        let mut seen = 0;
        let labels = block_on(predict_volume(
            &mut m,
            &vol,
            axis,
            &SlidingWindow::default(),
            &mut |_| {},
            &mut |_, _| seen += 1,
            &mut |_, _| true,
        ))
        .unwrap();
        assert_eq!(seen, dims[axis]);
        for i in 0..n {
            assert_eq!(
                labels.labels[i],
                (voxels[i] >= 0.5) as u16,
                "axis {axis} voxel {i}"
            );
        }
    }
    let mut m = Fake::new(4, 1, 1, true, 8);
    let mut budget = 2;
    let r = block_on(predict_volume(
        &mut m,
        &vol,
        2,
        &SlidingWindow::default(),
        &mut |_| {},
        &mut |_, _| {},
        &mut |_, _| {
            budget -= 1;
            budget >= 0
        },
    ));
    assert!(matches!(r, Err(DataError::Cancelled)));
    let mut m = Fake::new(4, 3, 1, true, 8);
    let r = block_on(predict_volume(
        &mut m,
        &vol,
        2,
        &SlidingWindow::default(),
        &mut |_| {},
        &mut |_, _| {},
        &mut |_, _| true,
    ));
    assert!(matches!(r, Err(DataError::Mismatch(_))));
}
