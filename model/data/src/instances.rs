//! Instance segmentation (cell nuclei) through a three-class semantic map, as the USEMA paper
//! trains its microscopy task (MODEL-SPEC §B.5): an instance label map becomes background (0),
//! interior (1) and boundary (2); a predicted class map becomes instances again by taking the
//! connected components of the interior and growing each into the boundary pixels around it.

use crate::metrics::connected_components;
use crate::preprocess::Sample;
use std::collections::VecDeque;

/// Class ids of the three-class map.
pub const BACKGROUND: u16 = 0;
pub const INTERIOR: u16 = 1;
pub const BOUNDARY: u16 = 2;
/// Their names, as an instance model's checkpoint stores them.
pub const CLASS_NAMES: [&str; 3] = ["background", "interior", "boundary"];

/// The 4-neighbours of pixel `i` inside a `w` × `h` image.
fn neighbours(i: usize, w: usize, h: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (i % w, i / w);
    [
        (x > 0).then(|| i - 1),
        (x + 1 < w).then(|| i + 1),
        (y > 0).then(|| i - w),
        (y + 1 < h).then(|| i + w),
    ]
    .into_iter()
    .flatten()
}

/// The three-class map of an instance label map (0 background, any other value one instance):
/// an instance's pixel with a 4-neighbour inside the image of another value (background or
/// another instance) is boundary, its other pixels interior (scikit-image's
/// `find_boundaries(mode="inner")`). Touching instances are so kept apart by their boundaries.
pub fn instances_to_classes(instances: &[u32], w: usize, h: usize) -> Vec<u16> {
    (0..instances.len())
        .map(|i| {
            let id = instances[i];
            if id == 0 {
                BACKGROUND
            } else if neighbours(i, w, h).any(|j| instances[j] != id) {
                BOUNDARY
            } else {
                INTERIOR
            }
        })
        .collect()
}

/// Instances of a predicted three-class map: the connected components (8-connectivity) of the
/// interior, each grown breadth-first into the boundary pixels it reaches through 4-neighbours
/// (a boundary pixel goes to the instance that reaches it first); boundary pixels no interior
/// reaches stay background. Ids from 1.
pub fn classes_to_instances(classes: &[u16], w: usize, h: usize) -> Vec<u32> {
    let interior: Vec<bool> = classes.iter().map(|&c| c == INTERIOR).collect();
    let mut labels = connected_components(&interior, w, h);
    let mut queue: VecDeque<usize> = (0..labels.len()).filter(|&i| labels[i] != 0).collect();
    while let Some(i) = queue.pop_front() {
        for j in neighbours(i, w, h) {
            if labels[j] == 0 && classes[j] == BOUNDARY {
                labels[j] = labels[i];
                queue.push_back(j);
            }
        }
    }
    labels
}

/// Where `tile`-long windows start so that they cover `0..len`: every `tile` from 0, the last
/// one moved back to end at `len` (so it overlaps its neighbour rather than running off the
/// image); one window at 0 when `len` ≤ `tile`.
pub fn tile_origins(len: usize, tile: usize) -> Vec<usize> {
    if len <= tile || tile == 0 {
        return vec![0];
    }
    let mut o: Vec<usize> = (0..len - tile).step_by(tile).collect();
    o.push(len - tile);
    o
}

/// The square training tiles (side `tile`) of an interleaved `w` × `h` × `c` image and its
/// per-pixel targets (one value per pixel: the three-class map as f32): the windows of
/// [`tile_origins`] along each axis. Where a side is shorter than the tile, the rest of the tile
/// is zero (background), as the sliding-window inference pads such images.
pub fn tiles(
    image: &[f32],
    targets: &[f32],
    w: usize,
    h: usize,
    c: usize,
    tile: usize,
) -> Vec<Sample> {
    let mut out = Vec::new();
    for &y0 in &tile_origins(h, tile) {
        for &x0 in &tile_origins(w, tile) {
            let mut img = vec![0.0; tile * tile * c];
            let mut tgt = vec![0.0; tile * tile];
            for y in 0..tile.min(h - y0) {
                for x in 0..tile.min(w - x0) {
                    let (p, q) = ((y0 + y) * w + x0 + x, y * tile + x);
                    img[q * c..(q + 1) * c].copy_from_slice(&image[p * c..(p + 1) * c]);
                    tgt[q] = targets[p];
                }
            }
            out.push(Sample {
                width: tile,
                height: tile,
                channels: c,
                image: img,
                mask: tgt,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 4×4 squares side by side (touching) and a lone pixel, in a 10 × 6 image.
    fn squares() -> (Vec<u32>, usize, usize) {
        let (w, h) = (10, 6);
        let mut m = vec![0u32; w * h];
        for y in 1..5 {
            for x in 1..5 {
                m[y * w + x] = 7;
            }
            for x in 5..9 {
                m[y * w + x] = 9;
            }
        }
        m[5 * w + 9] = 3;
        (m, w, h)
    }

    #[test]
    fn touching_instances_are_parted_by_their_boundaries() {
        let (m, w, h) = squares();
        let c = instances_to_classes(&m, w, h);
        let row = |y: usize| c[y * w..(y + 1) * w].to_vec();
        // Row 2: background, boundary, interior ×2, boundary | boundary, interior ×2, boundary, bg.
        assert_eq!(row(2), vec![0, 2, 1, 1, 2, 2, 1, 1, 2, 0]);
        assert_eq!(row(1), vec![0, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        // The lone pixel at the image corner has only background neighbours: boundary.
        assert_eq!(c[5 * w + 9], BOUNDARY);
    }

    #[test]
    fn classes_give_back_the_instances() {
        let (m, w, h) = squares();
        let back = classes_to_instances(&instances_to_classes(&m, w, h), w, h);
        // The same partition (ids renumbered); the lone pixel has no interior and is lost.
        for i in 0..m.len() {
            for j in 0..m.len() {
                if m[i] != 0 && m[i] != 3 && m[j] != 0 && m[j] != 3 {
                    assert_eq!(m[i] == m[j], back[i] == back[j], "pixels {i} and {j}");
                }
            }
        }
        assert!(back.iter().all(|&v| v <= 2));
        assert_eq!(back[5 * w + 9], 0);
        assert_eq!(back.iter().filter(|&&v| v != 0).count(), 32);
    }

    #[test]
    fn tiles_cover_the_image_and_pad_short_sides_with_zeros() {
        assert_eq!(tile_origins(256, 256), vec![0]);
        assert_eq!(tile_origins(100, 256), vec![0]);
        assert_eq!(tile_origins(600, 256), vec![0, 256, 344]);
        assert_eq!(tile_origins(512, 256), vec![0, 256]);
        // A 5 × 3 image, 2 channels holding (x, y); targets x + 10 y; tiles of 4.
        let (w, h) = (5, 3);
        let image: Vec<f32> = (0..w * h)
            .flat_map(|p| [(p % w) as f32, (p / w) as f32])
            .collect();
        let targets: Vec<f32> = (0..w * h).map(|p| (p % w + 10 * (p / w)) as f32).collect();
        let t = tiles(&image, &targets, w, h, 2, 4);
        assert_eq!(t.len(), 2, "x origins 0 and 1, one row of tiles");
        // The second tile starts at x = 1; its rows are y = 0, 1, 2, then a zero row.
        let second = &t[1];
        let ys: Vec<f32> = (0..3).map(|y| second.image[(y * 4) * 2 + 1]).collect();
        assert_eq!(ys, vec![0.0, 1.0, 2.0]);
        let xs: Vec<f32> = (0..4).map(|x| second.image[x * 2]).collect();
        assert_eq!(xs, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(second.mask[2 * 4 + 2], 23.0, "row y=2, x=3");
        assert!(second.image[3 * 4 * 2..].iter().all(|&v| v == 0.0));
        assert!(second.mask[3 * 4..].iter().all(|&v| v == 0.0));
    }
}
