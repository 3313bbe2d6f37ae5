//! Segmenting an image or volume with a trained network: a [`SegModel`] is a network with the
//! way its input is prepared ([`InputSpec`], stored with every checkpoint), loaded from a medseg
//! checkpoint, from bytes (the models bundled with the app) or from official weights. Volumes are
//! run slice by slice (axial); each slice is normalised, fitted to the network (resized whole as
//! in training, or tiled), and its probabilities land in a [`Proposal`] that the app re-thresholds
//! without running the network again.

use crate::infer::Segmenter;
use crate::nn::net::{Net, NetConfig};
use crate::nn::vm_unet::{BlockKind, VmUnetConfig};
use crate::train::checkpoint::{self, Tensors};
use burn::tensor::Device;
use medseg_data::preprocess::{resize_bilinear, zscore_stats, Fit, InputSpec, Normalization};
use medseg_data::proposal::Proposal;
use medseg_data::sliding::{predict_image, SlidingWindow, TileModel};
use medseg_data::volume::Volume;
use medseg_data::DataError;
use std::path::{Path, PathBuf};

/// What can go wrong between a model file and a proposal.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The model file cannot be read or does not describe a network we build.
    #[error("{path}: {problem}")]
    Model { path: PathBuf, problem: String },
    /// The image does not fit the model (channels, size, values).
    #[error("this model does not fit the image: {0}")]
    Mismatch(String),
    /// The GPU failed while running the network (out of memory, device lost, ...), even at the
    /// smallest tile batch.
    #[error("the GPU could not run the network: {0}")]
    Gpu(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Data(DataError),
    /// The checkpoint's files cannot be read or do not fit the network they describe.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

impl From<DataError> for SegmentError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Cancelled => SegmentError::Cancelled,
            other => SegmentError::Data(other),
        }
    }
}

/// A network ready to segment, with how its input is prepared.
pub struct SegModel {
    pub net: Net,
    pub input: InputSpec,
    /// What it segments, for people ("Polyp — colonoscopy (SA-UMamba)").
    pub title: String,
    /// Device memory (bytes) inference may use; sets how many tiles or slices go per call.
    pub memory_budget: u64,
}

/// Default device memory for inference when the caller does not know better.
pub const DEFAULT_MEMORY_BUDGET: u64 = 2 << 30;

impl SegModel {
    /// A medseg checkpoint (`best.json`, `last.json` or a bundled model's JSON, with its
    /// safetensors beside it, f32 or f16).
    pub fn from_checkpoint(json: &Path, device: &Device) -> Result<Self, SegmentError> {
        let err = |problem: String| SegmentError::Model {
            path: json.to_path_buf(),
            problem,
        };
        let meta = checkpoint::read_meta(json)?;
        let file = meta["weights"]
            .as_str()
            .ok_or_else(|| err("no \"weights\" file named".into()))?;
        let weights = json.with_file_name(file);
        let tensors = checkpoint::read_tensors(&weights)?;
        Self::from_parts(&meta, tensors, device).map_err(err)
    }

    /// A checkpoint's JSON and safetensors as bytes (the bundled models, files in a browser).
    pub fn from_bytes(
        name: &str,
        json: &[u8],
        weights: &[u8],
        device: &Device,
    ) -> Result<Self, SegmentError> {
        let err = |problem: String| SegmentError::Model {
            path: PathBuf::from(name),
            problem,
        };
        let meta: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| err(format!("not JSON ({e})")))?;
        let tensors = checkpoint::tensors_from_bytes(weights).map_err(|e| e.at(Path::new(name)))?;
        Self::from_parts(&meta, tensors, device).map_err(err)
    }

    fn from_parts(
        meta: &serde_json::Value,
        tensors: Tensors,
        device: &Device,
    ) -> Result<Self, String> {
        let net = checkpoint::load_tensors(meta, tensors, device)?;
        let input = match meta.get("input") {
            Some(v) => serde_json::from_value::<InputSpec>(v.clone())
                .map_err(|e| format!("\"input\": {e}"))?,
            // Checkpoints written before the input was stored: the training protocol.
            None => InputSpec::reference(
                meta["train"]["size"].as_u64().unwrap_or(256) as usize,
                InputSpec::default_classes(net.classes()),
            ),
        };
        let title = meta["title"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| default_title(&net.config(), &input));
        Self::new(net, input, title)
    }

    /// Official weights (PyTorch `.pth`/`.pt` or `.safetensors` under the official names): the
    /// VM-UNet-family configuration is read off the tensors (width, depths, classes, which
    /// blocks have RFAConv attention), the input prepared as the official training does.
    pub fn from_official(path: &Path, device: &Device) -> Result<Self, SegmentError> {
        let err = |problem: String| SegmentError::Model {
            path: path.to_path_buf(),
            problem,
        };
        let tensors = checkpoint::read_official(path)?;
        let cfg = official_config(&tensors).map_err(err)?;
        let net = checkpoint::load_official(path, &cfg, device)?;
        let input = InputSpec::reference(256, InputSpec::default_classes(cfg.classes()));
        let title = format!(
            "{} ({})",
            default_title(&cfg, &input),
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        Self::new(net, input, title).map_err(err)
    }

    /// Any model file: a medseg checkpoint's `.json`, or official `.pth`/`.pt`/`.safetensors`
    /// (a `.safetensors` with a medseg `.json` of the same name beside it is read as that
    /// checkpoint).
    pub fn open(path: &Path, device: &Device) -> Result<Self, SegmentError> {
        let lower = path.to_string_lossy().to_ascii_lowercase();
        if lower.ends_with(".json") {
            return Self::from_checkpoint(path, device);
        }
        let json = path.with_extension("json");
        if lower.ends_with(".safetensors") && json.exists() {
            return Self::from_checkpoint(&json, device);
        }
        Self::from_official(path, device)
    }

    pub fn new(net: Net, input: InputSpec, title: String) -> Result<Self, String> {
        let stride = net.config().stride();
        if input.size == 0 || !input.size.is_multiple_of(stride) {
            return Err(format!(
                "input size {} is not a positive multiple of the network's stride {stride}",
                input.size
            ));
        }
        if input.channels != net.in_channels() {
            return Err(format!(
                "the input description says {} channel(s), the network takes {}",
                input.channels,
                net.in_channels()
            ));
        }
        let k = net.classes().max(2);
        if input.classes.len() != k {
            return Err(format!(
                "{} class names for a network with {k} classes (background included)",
                input.classes.len()
            ));
        }
        Ok(SegModel {
            net,
            input,
            title,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        })
    }

    /// Segments `image` (a 2-D image or a volume, axial slices). `progress(done, total)` is
    /// called per slice or tile batch and stops the run when it returns false. Waits for the
    /// GPU; in the browser use [`SegModel::segment_async`].
    pub fn segment(
        &mut self,
        image: &Volume,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Proposal, SegmentError> {
        pollster::block_on(self.segment_async(image, progress))
    }

    /// [`SegModel::segment`] as a future: it waits for the GPU only at its awaits (the reads of
    /// each batch's probabilities), so it can run on the browser's main thread.
    pub async fn segment_async(
        &mut self,
        image: &Volume,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Proposal, SegmentError> {
        let channels = image.channels;
        let want = self.input.channels;
        if !(channels == want || (channels == 1 && want == 3)) {
            return Err(SegmentError::Mismatch(format!(
                "the image has {channels} channel(s), {} takes {want}{}",
                self.title,
                if want == 1 {
                    " (a grey-level image)"
                } else {
                    ""
                }
            )));
        }
        if let Some(i) = image.voxels.iter().position(|v| !v.is_finite()) {
            return Err(SegmentError::Mismatch(format!(
                "the image holds a non-finite value ({}) at voxel {}",
                image.voxels[i],
                i / channels
            )));
        }
        let [w, h, depth] = image.geometry.dims;
        if w == 0 || h == 0 || depth == 0 {
            return Err(SegmentError::Mismatch("the image is empty".into()));
        }
        // Per-volume statistics for the z-score; the other normalisations work per slice.
        let zscore = match self.input.normalization {
            Normalization::MrZScore => Some(zscore_stats(&image.voxels)),
            _ => None,
        };
        let mut proposal = Proposal::new(image.geometry.clone(), self.input.classes.clone());
        proposal.nifti = image.source.nifti.clone();
        let plane = w * h;
        let slice_of = |z: usize| -> Vec<f32> {
            let mut s = image.voxels[z * plane * channels..(z + 1) * plane * channels].to_vec();
            if channels == 1 && want == 3 {
                s = s.iter().flat_map(|&v| [v, v, v]).collect();
            }
            match (zscore, self.input.normalization) {
                (Some((mean, std)), _) => s
                    .iter_mut()
                    .for_each(|v| *v = ((*v as f64 - mean) / std) as f32),
                (None, n) => n.apply(&mut s),
            }
            s
        };
        let size = self.input.size;
        let budget = self.memory_budget;
        let net = self.net.clone();
        let device = net.device();
        let mut seg = Segmenter::new(net, device, size, budget).map_err(SegmentError::Mismatch)?;
        let cout = seg.out_channels();
        match self.input.fit {
            Fit::Resize => {
                // Whole slices resized to the network's input, several per call.
                let per_call = seg.max_batch();
                let mut z = 0;
                while z < depth {
                    if !progress(z, depth) {
                        return Err(SegmentError::Cancelled);
                    }
                    let n = per_call.min(depth - z);
                    let mut batch = Vec::with_capacity(n * want * size * size);
                    for k in z..z + n {
                        let s = resize_bilinear(&slice_of(k), w, h, want, size, size);
                        // Interleaved → planar (NCHW).
                        for c in 0..want {
                            batch.extend((0..size * size).map(|p| s[p * want + c]));
                        }
                    }
                    let probs = predict_shrinking(&mut seg, &batch, n).await?;
                    for (i, k) in (z..z + n).enumerate() {
                        let one = &probs[i * cout * size * size..(i + 1) * cout * size * size];
                        // Planar → interleaved for the resize back, then planar again.
                        let inter: Vec<f32> = (0..size * size)
                            .flat_map(|p| (0..cout).map(move |c| one[c * size * size + p]))
                            .collect();
                        let back = resize_bilinear(&inter, size, size, cout, w, h);
                        let planar: Vec<f32> = (0..cout)
                            .flat_map(|c| (0..plane).map(move |p| (c, p)))
                            .map(|(c, p)| back[p * cout + c])
                            .collect();
                        proposal
                            .set_from_probabilities(&planar, cout, plane, &mut |p| k * plane + p);
                    }
                    z += n;
                }
            }
            Fit::Tiles => {
                for z in 0..depth {
                    if !progress(z, depth) {
                        return Err(SegmentError::Cancelled);
                    }
                    let s = slice_of(z);
                    let probs = loop {
                        let r = predict_image(
                            &mut seg,
                            &s,
                            w,
                            h,
                            &SlidingWindow::default(),
                            &mut |_, _| true,
                        )
                        .await;
                        match r {
                            Ok(p) => break p,
                            // The GPU failed (out of memory): fewer tiles per call, then retry.
                            Err(_) if seg.max_batch() > 1 => seg.set_max_batch(seg.max_batch() / 2),
                            Err(e) => return Err(SegmentError::Gpu(e.to_string())),
                        }
                    };
                    proposal.set_from_probabilities(&probs, cout, plane, &mut |p| z * plane + p);
                }
            }
        }
        progress(depth, depth);
        Ok(proposal)
    }
}

/// Runs `n` planar inputs through the network, halving the batch when the GPU fails (out of
/// memory) until one input per call; the error of the last try otherwise.
async fn predict_shrinking(
    seg: &mut Segmenter,
    batch: &[f32],
    n: usize,
) -> Result<Vec<f32>, SegmentError> {
    let per = batch.len() / n;
    let mut step = n;
    loop {
        let mut out = Vec::new();
        let mut failed = None;
        for chunk in batch.chunks(step * per) {
            match TileModel::predict(seg, chunk, chunk.len() / per).await {
                Ok(p) => out.extend(p),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => return Ok(out),
            Some(e) if step == 1 => return Err(SegmentError::Gpu(e)),
            Some(_) => step = step.div_ceil(2).min(step - 1).max(1),
        }
    }
}

/// "Polyp (SA-UMamba)"-style title from the classes and the architecture.
fn default_title(cfg: &NetConfig, input: &InputSpec) -> String {
    let what = if input.instances {
        "Instances (interior, boundary)".to_string()
    } else {
        input.classes[1..].join(", ")
    };
    let arch = match cfg.name() {
        "sa-umamba" => "SA-UMamba",
        "sa-umamba-paper" => "SA-UMamba (paper)",
        "vm-unet" => "VM-UNet",
        "usema" => "USEMA",
        other => other,
    };
    format!("{what} ({arch})")
}

/// The VM-UNet-family configuration of an official state dict: base width and input channels
/// from the patch embedding, classes from the final 1×1 conv, depths from the block indices,
/// RSSS where blocks carry RFAConv attention (`conv_blk`).
pub fn official_config(t: &Tensors) -> Result<NetConfig, String> {
    let shape = |n: &str| t.get(n).map(|(s, _)| s.clone());
    let embed = shape("patch_embed.proj.weight")
        .ok_or("no patch_embed.proj.weight: not a VM-UNet / SA-UMamba state dict")?;
    let fin = shape("final_conv.weight").ok_or("no final_conv.weight")?;
    if embed.len() != 4 || fin.len() != 4 {
        return Err("patch_embed.proj.weight / final_conv.weight are not 4-D".into());
    }
    let depth_of = |stage: &str| -> Vec<usize> {
        let mut d = Vec::new();
        for i in 0.. {
            let prefix = format!("{stage}.{i}.blocks.");
            let n = t
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
                .max();
            match n {
                Some(n) => d.push(n + 1),
                None => break,
            }
        }
        d
    };
    let has_rfa = |stage: &str| {
        t.keys()
            .any(|k| k.starts_with(stage) && k.contains(".conv_blk."))
    };
    let depths = depth_of("layers");
    let depths_decoder = depth_of("layers_up");
    if depths.is_empty() || depths_decoder.is_empty() {
        return Err("no encoder/decoder blocks (layers.N.blocks / layers_up.N.blocks)".into());
    }
    let c0 = embed[0];
    let d_state = shape("layers.0.blocks.0.self_attention.A_logs")
        .and_then(|s| s.last().copied())
        .unwrap_or(16);
    Ok(NetConfig::VmUnet(VmUnetConfig {
        dims: (0..depths.len()).map(|i| c0 << i).collect(),
        depths,
        depths_decoder,
        d_state,
        num_classes: fin[0],
        in_channels: embed[1],
        encoder_block: if has_rfa("layers.") {
            BlockKind::Rsss
        } else {
            BlockKind::Vss
        },
        decoder_block: if has_rfa("layers_up.") {
            BlockKind::Rsss
        } else {
            BlockKind::Vss
        },
    }))
}
