//! Training on instance label maps (cell nuclei), as the USEMA paper trains its microscopy task
//! (MODEL-SPEC §B.5): each label map becomes the three-class map of [`medseg_data::instances`]
//! (background / interior / boundary), the network learns it on fixed-size tiles of the images
//! at their own resolution, and validation segments every full image by sliding windows, turns
//! the prediction back into instances and scores cell F1 at IoU 0.5 (MODEL-SPEC §A.12) per
//! image, averaged over the images.

use super::trainer::{check_sample, count_classes, dsc_of_counts, inference_copy, ClassDsc};
use crate::infer::Segmenter;
use crate::nn::net::Net;
use crate::segment::DEFAULT_MEMORY_BUDGET;
use medseg_data::dataset::Loaded;
use medseg_data::instances::{classes_to_instances, instances_to_classes, tiles, CLASS_NAMES};
use medseg_data::metrics::cell_f1;
use medseg_data::preprocess::{Normalization, Sample};
use medseg_data::proposal::Proposal;
use medseg_data::sliding::SlidingWindow;
use medseg_data::Geometry;

/// The class names of an instance model, background first.
pub fn class_names() -> Vec<String> {
    CLASS_NAMES.iter().map(|s| s.to_string()).collect()
}

/// A pair's image as the network takes it (normalised by `norm` over the whole image, grey
/// repeated to three channels, interleaved) and its instance ids, with its width and height.
fn image_and_ids(
    l: &Loaded,
    norm: Normalization,
) -> Result<(Vec<f32>, Vec<u32>, usize, usize), String> {
    // Two classes: no label-range check (instance ids are any values).
    check_sample(l, 2)?;
    let [w, h, _] = l.image.geometry.dims;
    let mut image = match l.image.channels {
        3 => l.image.voxels.clone(),
        1 => l.image.voxels.iter().flat_map(|&v| [v, v, v]).collect(),
        c => {
            return Err(format!(
                "{}: {c} channels; instance training takes grey or RGB images",
                l.pair.image.display()
            ))
        }
    };
    norm.apply(&mut image);
    let ids = l.mask.labels.iter().map(|&v| v as u32).collect();
    Ok((image, ids, w, h))
}

/// The training tiles (side `tile`) of every pair: its three-class map computed on the whole
/// image (so a tile's edge makes no boundary), then cut as [`medseg_data::instances::tiles`].
pub fn training_tiles(
    loaded: &[Loaded],
    tile: usize,
    norm: Normalization,
) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for l in loaded {
        let (image, ids, w, h) = image_and_ids(l, norm)?;
        let classes: Vec<f32> = instances_to_classes(&ids, w, h)
            .into_iter()
            .map(f32::from)
            .collect();
        out.extend(tiles(&image, &classes, w, h, 3, tile));
    }
    Ok(out)
}

/// The validation images, whole: the network's input and, as the mask, the instance ids.
pub fn validation_images(loaded: &[Loaded], norm: Normalization) -> Result<Vec<Sample>, String> {
    loaded
        .iter()
        .map(|l| {
            let (image, ids, w, h) = image_and_ids(l, norm)?;
            Ok(Sample {
                width: w,
                height: h,
                channels: 3,
                image,
                mask: ids.into_iter().map(|v| v as f32).collect(),
            })
        })
        .collect()
}

/// Cell F1, precision and recall at IoU 0.5, each the mean over the images, and the pooled DSC
/// of the interior and boundary classes over all pixels.
#[derive(Clone, Debug)]
pub struct InstanceScore {
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub dsc: ClassDsc,
}

/// The class map and the instance map of class probabilities (`channels` × `w·h`) as Segment
/// and `medseg predict` label them at `threshold` (through a [`Proposal`]: a pixel takes its
/// most likely foreground class when its foreground probability reaches the threshold; the
/// interior's components grown into the boundary, as `Proposal::instances` does), so
/// validation and predict agree.
pub fn instances_of_probabilities(
    probs: &[f32],
    channels: usize,
    w: usize,
    h: usize,
    threshold: f32,
) -> (Vec<u16>, Vec<u32>) {
    let mut p = Proposal::new(Geometry::axis_aligned([w, h, 1], [1.0; 3]), class_names());
    p.set_from_probabilities(probs, channels, w * h, &mut |i| i);
    let classes = p.labels(threshold).labels;
    let instances = classes_to_instances(&classes, w, h);
    (classes, instances)
}

/// Segments each validation image whole (sliding windows of `tile`, outside autodiff) and
/// scores its instances against the image's ids.
pub fn instance_scores(net: &Net, val: &[Sample], tile: usize) -> Result<InstanceScore, String> {
    let (eval, device) = inference_copy(net, &net.device());
    let mut seg = Segmenter::new(eval, device, tile, DEFAULT_MEMORY_BUDGET)?;
    let k = net.classes().max(2);
    let mut counts = vec![[0.0f64; 3]; k - 1];
    let (mut f1, mut precision, mut recall) = (0.0, 0.0, 0.0);
    for s in val {
        let (w, h) = (s.width, s.height);
        let probs = seg.predict(&s.image, w, h, &SlidingWindow::default(), &mut |_, _| true)?;
        let (classes, predicted) = instances_of_probabilities(&probs, k, w, h, 0.5);
        let truth: Vec<u32> = s.mask.iter().map(|&v| v as u32).collect();
        let score = cell_f1(&truth, &predicted, w, h, 0.5).map_err(|e| e.to_string())?;
        f1 += score.f1;
        precision += score.precision;
        recall += score.recall;
        let truth_classes = instances_to_classes(&truth, w, h);
        count_classes(
            &mut counts,
            classes
                .iter()
                .zip(&truth_classes)
                .map(|(&p, &t)| (p as usize, t as usize)),
        );
    }
    let n = val.len().max(1) as f64;
    Ok(InstanceScore {
        f1: f1 / n,
        precision: precision / n,
        recall: recall / n,
        dsc: dsc_of_counts(&counts),
    })
}
