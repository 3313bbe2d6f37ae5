//! The training loop for VM-UNet / SA-UMamba and USEMA on 2-D image/mask pairs: official
//! preprocessing and augmentation, each network's loss (BceDice; USEMA's deep-supervised
//! Dice + CE), backward through our kernels, GPU AdamW with the cosine schedule,
//! pooled validation DSC each epoch, checkpoints (safetensors + JSON) of the best and the last
//! epoch. Progress and cancel go through a callback, so the CLI and the app's training tab share
//! it.

use super::adamw::AdamW;
use super::optim::{Cosine, GpuAdamW};
use crate::nn::init::{HeInit, OfficialInit};
use crate::nn::net::{Net, NetConfig};
use crate::nn::params::{Loader, NamedParams, WeightSource};
use burn::tensor::{Device, Tensor, TensorData};
use medseg_data::dataset::Loaded;
use medseg_data::preprocess::{
    resize_bilinear, resize_nearest, Augment, InputSpec, Normalization, Sample, SeededRng,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What to train and how.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub net: NetConfig,
    pub epochs: usize,
    pub batch: usize,
    /// Input side (a multiple of the network's stride).
    pub size: usize,
    pub seed: u64,
    pub optimizer: AdamW,
    pub schedule: Cosine,
    /// The official flips and rotation.
    pub augment: bool,
    /// Stochastic depth (0.2 in the reference recipe; VM-UNet / SA-UMamba only).
    pub drop_path: f64,
    /// How images are prepared (stored with every checkpoint for inference); its size follows
    /// `size` when checkpoints are written.
    pub input: InputSpec,
    /// Validation samples (the first ones) whose predictions are reported after each epoch
    /// ([`Event::Previews`]); 0 for none.
    pub previews: usize,
    /// When the validation samples are the slices of volumes: how many consecutive samples
    /// each volume has. The validation DSC is then each volume's (its slices pooled: the DSC
    /// of the re-stacked volume) averaged over the volumes. Empty: all samples pooled.
    pub val_volumes: Vec<usize>,
    /// Instance training ([`super::instances`]): the training samples are tiles of the
    /// three-class map, the validation samples whole images of any size with their instance
    /// ids as the mask, scored by cell F1 (which then picks the best epoch).
    pub instances: bool,
}

impl TrainConfig {
    /// The reference protocol (BASELINE.md): batch 16, 256², official AdamW, cosine over the
    /// run, official augmentation, seed 42.
    pub fn reference(net: NetConfig, epochs: usize) -> Self {
        let net_classes = net.classes();
        TrainConfig {
            net,
            epochs,
            batch: 16,
            size: 256,
            seed: 42,
            optimizer: AdamW::official(),
            schedule: Cosine::official(epochs),
            augment: true,
            drop_path: 0.2,
            input: InputSpec::reference(256, InputSpec::default_classes(net_classes)),
            previews: 0,
            val_volumes: Vec::new(),
            instances: false,
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub lr: f64,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Pooled DSC over all validation pixels at threshold 0.5 (None without validation data);
    /// with several foreground classes, the mean of theirs.
    pub val_dsc: Option<f64>,
    /// With several foreground classes: each one's pooled DSC (None where a class is in
    /// neither the predictions nor the labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_dsc_per_class: Option<Vec<Option<f64>>>,
    /// Instance training: cell F1, precision and recall at IoU 0.5, means over the validation
    /// images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cell_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cell_precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cell_recall: Option<f64>,
    pub seconds: f64,
    pub train_images_per_s: f64,
}

/// Reported while training; return false from the callback to stop after the current step.
pub enum Event<'a> {
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
    },
    Epoch(&'a EpochReport),
    /// After an epoch's report: the first [`TrainConfig::previews`] validation samples and the
    /// network's foreground probability for each (one value per pixel).
    Previews {
        epoch: usize,
        samples: &'a [Sample],
        predicted: &'a [Vec<f32>],
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: Vec<EpochReport>,
    /// Every step's loss, in order.
    pub step_losses: Vec<f64>,
    /// The epoch of the best validation score (cell F1 for instance training, else the DSC)
    /// and that epoch's DSC.
    pub best_epoch: Option<usize>,
    pub best_val_dsc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_val_cell_f1: Option<f64>,
    pub cancelled: bool,
}

/// Why a loaded pair cannot be trained on (a volume in this 2-D trainer, NaN or infinite
/// pixels, a label beyond the `classes` the network learns), naming the file; the run skips
/// such pairs and lists them. `classes` counts the background (2 for binary masks, where any
/// label other than 0 is foreground).
pub fn check_sample(l: &Loaded, classes: usize) -> Result<(), String> {
    let d = l.image.geometry.dims[2];
    if d != 1 {
        return Err(format!(
            "{}: a volume ({d} slices); this trainer takes 2-D images",
            l.pair.image.display()
        ));
    }
    if let Some(i) = l.image.voxels.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{}: the image holds NaN or infinite values (sample {i} is {})",
            l.pair.image.display(),
            l.image.voxels[i]
        ));
    }
    if classes > 2 {
        if let Some(&v) = l.mask.labels.iter().find(|&&v| v as usize >= classes) {
            return Err(format!(
                "{}: holds label {v}, but the network learns {classes} classes (0 to {})",
                l.pair.mask.display(),
                classes - 1
            ));
        }
    }
    Ok(())
}

/// The axial slices (along the third voxel axis) of a volume as 2-D pairs, each with its
/// mask's slice, after normalising the whole volume by `norm` (so a z-score uses the volume's
/// statistics, as inference does); a 2-D image comes back as it is.
pub fn slices(l: Loaded, norm: Normalization) -> Vec<Loaded> {
    let [w, h, d] = l.image.geometry.dims;
    if d <= 1 {
        return vec![l];
    }
    let Loaded { pair, image, mask } = l;
    let mut voxels = image.voxels;
    norm.apply(&mut voxels);
    let c = image.channels;
    let plane = w * h;
    let geometry = medseg_data::Geometry::axis_aligned([w, h, 1], image.geometry.spacing_mm);
    (0..d)
        .map(|z| {
            let image = medseg_data::Volume {
                geometry: geometry.clone(),
                channels: c,
                voxels: voxels[z * plane * c..(z + 1) * plane * c].to_vec(),
                source: image.source.clone(),
            };
            let mut slice = medseg_data::LabelMap::new(geometry.clone());
            slice.labels = mask.labels[z * plane..(z + 1) * plane].to_vec();
            let mut pair = pair.clone();
            pair.stem = format!("{} slice {z}", pair.stem);
            Loaded {
                pair,
                image,
                mask: slice,
            }
        })
        .collect()
}

/// Images normalised by `norm` per image (the reference: per-image min–max to [0, 255]; slices
/// of volumes come normalised already, with [`Normalization::None`]) and resized to `size`²
/// (bilinear). Binary masks (`classes` 2) become 0/1 and are resized bilinearly too, so targets
/// are soft at the edges as in the official pipeline; label maps of more classes keep their
/// class ids and are resized nearest-neighbour.
pub fn prepare(
    loaded: &[Loaded],
    size: usize,
    classes: usize,
    norm: Normalization,
) -> Result<Vec<Sample>, String> {
    loaded
        .iter()
        .map(|l| {
            check_sample(l, classes)?;
            let [w, h, _] = l.image.geometry.dims;
            let c = l.image.channels;
            let mut image = l.image.voxels.clone();
            if c == 1 {
                // Grey images are repeated to 3 channels (MODEL-SPEC §A.2).
                image = image.iter().flat_map(|&v| [v, v, v]).collect();
            }
            norm.apply(&mut image);
            let labels = classes > 2;
            let mask: Vec<f32> = l
                .mask
                .labels
                .iter()
                .map(|&v| {
                    if labels {
                        v as f32
                    } else {
                        (v > 0) as u8 as f32
                    }
                })
                .collect();
            let (image, mask) = if (w, h) == (size, size) {
                (image, mask)
            } else if labels {
                (
                    resize_bilinear(&image, w, h, 3, size, size),
                    resize_nearest(&mask, w, h, size, size),
                )
            } else {
                (
                    resize_bilinear(&image, w, h, 3, size, size),
                    resize_bilinear(&mask, w, h, 1, size, size),
                )
            };
            Ok(Sample {
                width: size,
                height: size,
                channels: 3,
                image,
                mask,
            })
        })
        .collect()
}

/// (B, 3, S, S) images and (B, 1, S, S) masks of a batch, as host arrays (NCHW).
fn batch_arrays(samples: &[&Sample]) -> (Vec<f32>, Vec<f32>) {
    let (b, s) = (samples.len(), samples[0].width);
    let mut x = vec![0f32; b * 3 * s * s];
    let mut y = vec![0f32; b * s * s];
    for (i, smp) in samples.iter().enumerate() {
        for p in 0..s * s {
            for c in 0..3 {
                x[((i * 3 + c) * s * s) + p] = smp.image[p * 3 + c];
            }
            y[i * s * s + p] = smp.mask[p];
        }
    }
    (x, y)
}

/// Host arrays of a batch uploaded as (B, 3, S, S) images and (B, 1, S, S) masks.
fn upload(
    (x, y): (Vec<f32>, Vec<f32>),
    b: usize,
    s: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    (
        Tensor::from_data(TensorData::new(x, vec![b, 3, s, s]), device),
        Tensor::from_data(TensorData::new(y, vec![b, 1, s, s]), device),
    )
}

fn batch_tensors(samples: &[&Sample], device: &Device) -> (Tensor<4>, Tensor<4>) {
    upload(
        batch_arrays(samples),
        samples.len(),
        samples[0].width,
        device,
    )
}

fn scalar(t: Tensor<1>) -> Result<f64, String> {
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading back: {e:?}"))?;
    Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
}

/// Pooled confusion counts (TP, FP, FN) per foreground class: for a binary network of the
/// foreground probability > 0.5 against masks > 0.5 (one class), for K > 2 classes of the
/// most probable class against the class ids (classes 1 to K − 1).
fn confusion(
    net: &mut Net,
    val: &[Sample],
    batch: usize,
    device: &Device,
) -> Result<Vec<[f64; 3]>, String> {
    let k = net.classes().max(2);
    let mut acc = vec![[0.0f64; 3]; k - 1];
    let (mut eval, device) = inference_copy(net, device);
    for chunk in val.chunks(batch.max(1)) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let (x, y) = batch_tensors(&refs, &device);
        if k == 2 {
            let p = eval.foreground(x)?.greater_elem(0.5).float();
            let y = y.greater_elem(0.5).float();
            let tp = (p.clone() * y.clone()).sum();
            let fp = (p.clone() * y.clone().neg().add_scalar(1.0)).sum();
            let fn_ = (p.neg().add_scalar(1.0) * y).sum();
            acc[0][0] += scalar(tp)?;
            acc[0][1] += scalar(fp)?;
            acc[0][2] += scalar(fn_)?;
            continue;
        }
        // The most probable class per pixel, counted on the host.
        let predicted = eval
            .probabilities(x)?
            .argmax(1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("reading back: {e:?}"))?;
        // The class ids are on the host already, in the batch's order.
        let truth = chunk.iter().flat_map(|s| s.mask.iter());
        count_classes(
            &mut acc,
            predicted
                .iter()
                .zip(truth)
                .map(|(&p, &t)| (p as usize, t as usize)),
        );
    }
    Ok(acc)
}

/// Adds (predicted, true) class-id pairs to the per-foreground-class (TP, FP, FN) counts `acc`
/// (class c at `acc[c − 1]`; ids beyond the classes count for none).
pub(crate) fn count_classes(acc: &mut [[f64; 3]], pairs: impl Iterator<Item = (usize, usize)>) {
    let k = acc.len() + 1;
    for (p, t) in pairs {
        if p == t {
            if p > 0 && p < k {
                acc[p - 1][0] += 1.0;
            }
        } else {
            if p > 0 && p < k {
                acc[p - 1][1] += 1.0;
            }
            if t > 0 && t < k {
                acc[t - 1][2] += 1.0;
            }
        }
    }
}

/// A copy of the network outside autodiff: validation must not record a graph (it would hold
/// every batch's activations until the next backward pass).
pub(crate) fn inference_copy(net: &Net, device: &Device) -> (Net, Device) {
    let mut eval = net.clone();
    eval.visit_params("", &mut |_, mut p| p.to_constant());
    (eval, device.clone().inner())
}

/// The foreground probability of each sample (one value per pixel), outside autodiff.
pub fn foreground_maps(net: &mut Net, samples: &[Sample]) -> Result<Vec<Vec<f32>>, String> {
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let (mut eval, device) = inference_copy(net, &net.device());
    let refs: Vec<&Sample> = samples.iter().collect();
    let (x, _) = batch_tensors(&refs, &device);
    let p = eval
        .foreground(x)?
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading back: {e:?}"))?;
    let per = p.len() / samples.len();
    Ok(p.chunks(per).map(|c| c.to_vec()).collect())
}

/// Pooled validation DSC over all pixels of `val` together, as reported each epoch: of the
/// foreground (probability > 0.5 against masks > 0.5) for a binary network, else the mean over
/// the foreground classes present in the predictions or the labels of each class's DSC (most
/// probable class against the class ids); runs outside autodiff in batches of `batch`.
pub fn pooled_dsc(net: &mut Net, val: &[Sample], batch: usize) -> Result<f64, String> {
    Ok(class_dsc(net, val, batch)?.mean)
}

/// Pooled validation DSC per foreground class (None for a class in neither the predictions
/// nor the labels) and their mean, as [`pooled_dsc`] computes it.
#[derive(Clone, Debug)]
pub struct ClassDsc {
    pub per_class: Vec<Option<f64>>,
    pub mean: f64,
}

pub fn class_dsc(net: &mut Net, val: &[Sample], batch: usize) -> Result<ClassDsc, String> {
    let device = net.device();
    let counts = confusion(net, val, batch, &device)?;
    Ok(dsc_of_counts(&counts))
}

pub(crate) fn dsc_of_counts(counts: &[[f64; 3]]) -> ClassDsc {
    let per_class: Vec<Option<f64>> = counts
        .iter()
        .map(|&[tp, fp, fn_]| (tp + fp + fn_ > 0.0).then(|| 2.0 * tp / (2.0 * tp + fp + fn_)))
        .collect();
    ClassDsc {
        mean: mean_or_one(per_class.iter().flatten().copied()),
        per_class,
    }
}

fn mean_or_one(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        1.0
    } else {
        sum / n as f64
    }
}

/// [`class_dsc`] of each volume (`volumes[i]` consecutive samples: its slices, pooled — the DSC
/// of the re-stacked volume), averaged over the volumes: per class over the volumes where the
/// class is present, the mean over the volumes' means.
pub fn volume_dsc(
    net: &mut Net,
    val: &[Sample],
    volumes: &[usize],
    batch: usize,
) -> Result<ClassDsc, String> {
    let device = net.device();
    let mut each = Vec::new();
    let mut start = 0;
    for &n in volumes {
        let end = (start + n).min(val.len());
        each.push(dsc_of_counts(&confusion(
            net,
            &val[start..end],
            batch,
            &device,
        )?));
        start = end;
    }
    let k = each.first().map_or(0, |d| d.per_class.len());
    let per_class = (0..k)
        .map(|c| {
            let v: Vec<f64> = each.iter().filter_map(|d| d.per_class[c]).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    Ok(ClassDsc {
        mean: mean_or_one(each.iter().map(|d| d.mean)),
        per_class,
    })
}

/// Builds the network with its initialisation (VM-UNet / SA-UMamba: the official one;
/// USEMA: He) on `device` (autodiff).
pub fn init_network(cfg: &NetConfig, seed: u64, device: &Device) -> Result<Net, String> {
    let mut official;
    let mut he;
    let init: &mut dyn WeightSource = match cfg {
        NetConfig::VmUnet(_) => {
            official = OfficialInit::new(seed);
            &mut official
        }
        NetConfig::Usema(_) => {
            he = HeInit::new(seed);
            &mut he
        }
    };
    Net::load(cfg, &mut Loader::new(init, device.clone(), ""))
}

/// Where a run stands between epochs: everything needed to continue it exactly.
#[derive(Clone, Debug)]
pub struct TrainState {
    pub opt: GpuAdamW,
    /// 0-based index of the next epoch to run.
    pub next_epoch: usize,
    /// 0-based index of the next step within that epoch (0 between epochs; a run stopped
    /// mid-epoch continues at this step).
    pub next_step: usize,
    /// The shuffling generator at the start of `next_epoch` (the epoch's order is drawn from
    /// it) and the augmentation generator before batch `next_step`.
    pub shuffle_rng: u64,
    pub augment_rng: u64,
    pub summary: TrainSummary,
}

impl TrainState {
    pub fn new(cfg: &TrainConfig) -> Self {
        TrainState {
            opt: GpuAdamW::new(cfg.optimizer),
            next_epoch: 0,
            next_step: 0,
            shuffle_rng: cfg.seed,
            augment_rng: Augment::official(cfg.seed).rng_state(),
            summary: TrainSummary::default(),
        }
    }
}

/// Trains `net` on `train` (validating on `val` each epoch) from `state` until `cfg.epochs` or
/// until the callback returns false. With `out`, writes `last.*` and `state.*` (to resume)
/// every epoch, `best.*` when the validation DSC improves, and `history.json`.
pub fn train(
    net: &mut Net,
    cfg: &TrainConfig,
    state: &mut TrainState,
    train: &[Sample],
    val: &[Sample],
    out: Option<&Path>,
    on_event: &mut dyn FnMut(Event) -> bool,
) -> Result<TrainSummary, String> {
    if train.is_empty() {
        return Err("no training samples".into());
    }
    let stride = cfg.net.stride();
    if !cfg.size.is_multiple_of(stride)
        || train
            .iter()
            .chain(if cfg.instances { &[][..] } else { val })
            .any(|s| s.width != cfg.size || s.height != cfg.size)
    {
        return Err(format!(
            "samples must be {0}×{0} with {0} a multiple of {stride} ({1}'s stride)",
            cfg.size,
            cfg.net.name()
        ));
    }
    let device = net.device();
    if !device.is_autodiff() {
        return Err("training needs an autodiff device".into());
    }
    let batch = cfg.batch.clamp(1, train.len());
    let steps = train.len() / batch;
    state.summary.cancelled = false;
    net.set_drop_path(cfg.drop_path);
    for epoch in state.next_epoch..cfg.epochs {
        let t0 = Instant::now();
        let lr = cfg.schedule.lr(epoch);
        let first_step = std::mem::take(&mut state.next_step).min(steps);
        let mut rng = SeededRng::new(state.shuffle_rng);
        let augment = Augment::official(cfg.seed).with_rng_state(state.augment_rng);
        // A fresh permutation each epoch, from the generator's running state.
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        // The losses of the steps already run when this epoch was stopped and resumed.
        let done = state.summary.step_losses.len();
        let mut losses = state.summary.step_losses[done - first_step.min(done)..].to_vec();
        // The CPU side of a step (picking, augmenting and packing the next batch) runs on a
        // second thread while this one records the current step, and the loss of step k is
        // read back only after step k + 1 is submitted, so the GPU is never left waiting for
        // a readback or for batch preparation.
        let prepare_batch = |step: usize, mut augment: Augment| {
            let mut picked: Vec<Sample> = order[step * batch..(step + 1) * batch]
                .iter()
                .map(|&i| train[i].clone())
                .collect();
            if cfg.augment {
                for s in picked.iter_mut() {
                    augment.apply(s);
                }
            }
            let refs: Vec<&Sample> = picked.iter().collect();
            (batch_arrays(&refs), augment)
        };
        let side = train[0].width;
        // Where the epoch's loop ended: the next step when it was stopped before its last
        // step (with the augmentation state before that step's batch), and whether a stop was
        // asked for at the epoch's end.
        type Ended = (Option<usize>, bool, Augment);
        let (stopped_at, stop_after_epoch, augment) =
            std::thread::scope(|scope| -> Result<Ended, String> {
                let mut augment = augment;
                let mut stop_requested = false;
                if first_step == steps {
                    return Ok((None, false, augment));
                }
                let (mut arrays, aug) = prepare_batch(first_step, augment.clone());
                let mut pending: Option<(usize, Tensor<1>)> = None;
                let mut report =
                    |step: usize, loss: Tensor<1>, losses: &mut Vec<f64>, tell: bool| {
                        let value = scalar(loss)?;
                        if !value.is_finite() {
                            return Err(format!(
                                "the training loss or its gradients became {value} at epoch {}, \
                                 step {}; the last checkpoint was kept; check the data for NaN \
                                 or Inf values, or try a lower learning rate",
                                epoch + 1,
                                step + 1
                            ));
                        }
                        losses.push(value);
                        state.summary.step_losses.push(value);
                        // Every step is told (logs keep them all); only a told step's answer
                        // can stop the run.
                        let go = on_event(Event::Step {
                            epoch: epoch + 1,
                            step: step + 1,
                            steps,
                            loss: value,
                        });
                        Ok(!tell || go)
                    };
                // `augment` is the generator before the batch in `arrays`, `aug` after it.
                let mut aug = aug;
                for step in first_step..steps {
                    let next = (step + 1 < steps).then(|| {
                        let aug = aug.clone();
                        scope.spawn(move || prepare_batch(step + 1, aug))
                    });
                    // Stochastic-depth draws are seeded per step, so a run resumed mid-epoch
                    // draws the same as an uninterrupted one.
                    net.set_drop_seed(
                        cfg.seed
                            .wrapping_mul(1_000_003)
                            .wrapping_add(epoch as u64)
                            .wrapping_mul(1_000_033)
                            .wrapping_add(step as u64),
                    );
                    let (x, y) = upload(arrays, batch, side, &device);
                    let loss = net.train_loss(x, y)?;
                    let mut value = loss.clone().inner();
                    let grads = loss.backward();
                    state.opt.step(net, &grads, lr);
                    if let Some(probe) = state.opt.nonfinite_probe() {
                        value = value + probe;
                    }
                    augment = aug.clone();
                    if let Some((k, previous)) = pending.replace((step, value)) {
                        if !report(k, previous, &mut losses, true)? {
                            if step + 1 == steps {
                                // Only the last step is left: finish the epoch, then stop.
                                stop_requested = true;
                            } else {
                                // Step `step` is applied too: record its loss, and continue
                                // after it.
                                if let Some((k, last)) = pending.take() {
                                    report(k, last, &mut losses, false)?;
                                }
                                return Ok((Some(step + 1), false, augment));
                            }
                        }
                    }
                    if let Some(handle) = next {
                        let (a, g) = handle
                            .join()
                            .map_err(|_| "preparing a training batch failed".to_string())?;
                        arrays = a;
                        aug = g;
                    } else {
                        arrays = (Vec::new(), Vec::new());
                    }
                }
                if let Some((k, last)) = pending {
                    // A stop asked at the last step ends the epoch first.
                    stop_requested |= !report(k, last, &mut losses, !stop_requested)?;
                }
                Ok((None, stop_requested, augment))
            })?;
        if let Some(next_step) = stopped_at {
            // Stopped mid-epoch: the state records the step to continue at.
            state.next_step = next_step;
            state.augment_rng = augment.rng_state();
            state.summary.cancelled = true;
            if let Some(dir) = out {
                super::checkpoint::save_state(dir, net, cfg, state)?;
            }
            return Ok(state.summary.clone());
        }
        state.shuffle_rng = rng.state();
        state.augment_rng = augment.rng_state();
        state.next_epoch = epoch + 1;
        let summary = &mut state.summary;
        let train_seconds = t0.elapsed().as_secs_f64();
        let cells = if cfg.instances && !val.is_empty() {
            Some(super::instances::instance_scores(net, val, cfg.size)?)
        } else {
            None
        };
        let dsc = if val.is_empty() {
            None
        } else if let Some(c) = &cells {
            Some(c.dsc.clone())
        } else {
            Some(if cfg.val_volumes.is_empty() {
                class_dsc(net, val, batch)?
            } else {
                volume_dsc(net, val, &cfg.val_volumes, batch)?
            })
        };
        let val_dsc = dsc.as_ref().map(|d| d.mean);
        let report = EpochReport {
            epoch: epoch + 1,
            lr,
            train_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            val_dsc,
            val_dsc_per_class: dsc.filter(|d| d.per_class.len() > 1).map(|d| d.per_class),
            val_cell_f1: cells.as_ref().map(|c| c.f1),
            val_cell_precision: cells.as_ref().map(|c| c.precision),
            val_cell_recall: cells.as_ref().map(|c| c.recall),
            seconds: t0.elapsed().as_secs_f64(),
            train_images_per_s: (steps * batch) as f64 / train_seconds.max(1e-9),
        };
        // The best epoch by cell F1 for instance training, else by the DSC.
        let score = report.val_cell_f1.or(val_dsc);
        let best = summary.best_val_cell_f1.or(summary.best_val_dsc);
        let improved = match (score, best) {
            (Some(d), Some(b)) => d > b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            summary.best_val_dsc = val_dsc;
            summary.best_val_cell_f1 = report.val_cell_f1;
            summary.best_epoch = Some(epoch + 1);
        }
        summary.epochs.push(report.clone());
        if let Some(dir) = out {
            super::checkpoint::save(dir, "last", net, cfg, &report)?;
            if improved {
                super::checkpoint::save(dir, "best", net, cfg, &report)?;
            }
            super::checkpoint::save_state(dir, net, cfg, state)?;
        }
        let mut go_on = on_event(Event::Epoch(&report));
        // Previews show the first validation samples at the network's size; instance
        // validation images are whole images of any size.
        if cfg.previews > 0 && !val.is_empty() && !cfg.instances {
            let shown = &val[..cfg.previews.min(val.len())];
            let predicted = foreground_maps(net, shown)?;
            go_on &= on_event(Event::Previews {
                epoch: epoch + 1,
                samples: shown,
                predicted: &predicted,
            });
        }
        let summary = &mut state.summary;
        if let Some(dir) = out {
            let body = serde_json::to_vec_pretty(&*summary).map_err(|e| e.to_string())?;
            medseg_data::atomic::write_atomic(&dir.join("history.json"), true, |w| {
                w.write_all(&body)
            })
            .map_err(|e| e.to_string())?;
        }
        if !go_on || stop_after_epoch {
            summary.cancelled = true;
            break;
        }
    }
    Ok(state.summary.clone())
}

/// Whether one training step's forward and backward pass at `batch` (of `size`² inputs) fits
/// the device: runs it on blank inputs, without updating the weights, and reads the loss back;
/// a GPU failure (out of memory) is false. After such a failure the runtime may refuse every
/// later call on the device, so each try wants a fresh process (`medseg probe-step`).
pub fn step_fits(net: &Net, size: usize, batch: usize) -> bool {
    let device = net.device();
    let mut probe = net.clone();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let x = Tensor::<4>::zeros([batch, 3, size, size], &device);
        let y = Tensor::<4>::zeros([batch, 1, size, size], &device);
        let loss = probe.train_loss(x, y)?;
        let value = loss.clone().inner();
        drop(loss.backward());
        scalar(value)
    }));
    matches!(run, Ok(Ok(_)))
}

/// Short name of a network configuration.
pub fn model_name(cfg: &NetConfig) -> &'static str {
    cfg.name()
}

/// Parameter count (for reports).
pub fn parameters(net: &mut Net) -> usize {
    net.param_count()
}
