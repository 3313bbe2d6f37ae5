//! Train: a network on a dataset folder by the reference protocol, with checkpoints, resume and
//! a time limit. The CLI's `medseg train` and the app's training tab run this one job.

use super::{JobError, MaskArgs, Reporter};
use medseg_data::dataset::{load_pairs, Dataset};
use medseg_data::preprocess::Normalization;
use medseg_model::gpu::GpuContext;
use medseg_model::nn::net::NetConfig;
use medseg_model::train::trainer::{self, Event, TrainConfig, TrainState, TrainSummary};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Everything a training run is started with: the flags of `medseg train` (and
/// `medseg --train`), and what the app's training tab fills in.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainJob {
    /// sa-umamba (as released), sa-umamba-paper (RSSS decoder blocks too), vm-unet or usema.
    #[arg(long, default_value = "sa-umamba")]
    pub model: String,
    /// USEMA: SEMA window side (16 or 32 in the paper).
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// USEMA: drop SEMA's global mean-of-V term (the paper's ablation).
    #[arg(long)]
    pub no_mean_term: bool,
    /// VM-UNet / SA-UMamba: base width C (stages C, 2C, 4C, 8C; the paper's 96). Smaller
    /// widths give the compact networks bundled with the app.
    #[arg(long)]
    pub width: Option<usize>,
    /// Names of the foreground classes, comma-separated (stored with the checkpoints, shown
    /// by the app), e.g. "polyp". Two or more train a multi-class network on label maps whose
    /// values are the class ids (0 background, 1 the first name, ...). Without the flag, a
    /// classes.json in the dataset folder (a JSON list of names, background first) is used.
    #[arg(long, value_delimiter = ',')]
    pub class_names: Vec<String>,
    /// Dataset folder with images/ and masks/ paired by name.
    #[arg(long)]
    pub data: PathBuf,
    /// The masks are instance label maps (one id per object, 0 background; e.g. cell nuclei
    /// as 16-bit PNG): the network learns their background / interior / boundary map on
    /// --size tiles of the images at their own resolution, validation segments whole images
    /// by sliding windows and scores cell F1 at IoU 0.5; Segment and predict then give
    /// instance maps.
    #[arg(long)]
    pub instances: bool,
    /// Output folder for checkpoints and the history.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 39)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Input side (a multiple of the network's stride: 32; USEMA 2^(stages-1), 64 at 256).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Peak learning rate of the cosine schedule (it falls to a hundredth of it).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Share of the pairs held out for validation when there is no split file.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Train/val split JSON ({"train": [...], "val": [...]}); default DATA/split.json when it
    /// exists, else a seeded 80/20 split.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Use only the first N training images (quick runs).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Use only the first N validation images.
    #[arg(long)]
    pub limit_val: Option<usize>,
    /// Continue the run saved in OUT (state.json / state.safetensors).
    #[arg(long)]
    pub resume: bool,
    /// Stop cleanly after the epoch that leaves too little time for another within this
    /// many minutes (continue later with --resume).
    #[arg(long)]
    pub stop_after_minutes: Option<f64>,
    /// Start from these weights instead of the initialisation: an official checkpoint
    /// (PyTorch .pth/.pt or .safetensors, official parameter names) or a medseg checkpoint's
    /// .safetensors. Refused, with the first mismatches listed, when it does not fit --model.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Also write the final report (the summary of the run) to this JSON file; it is always
    /// written to OUT/report.json.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub masks: MaskArgs,
    /// Intensity normalisation: auto (per-image min–max to [0, 255] for 2-D images, as the
    /// reference; a z-score over each volume for volumes, a CT window of −125 to 275 HU for CT
    /// DICOM), minmax, zscore or ct. Stored with the checkpoints, so Segment does the same.
    #[arg(long, default_value = "auto")]
    pub normalization: String,
    /// Validation images whose predictions are reported after each epoch (the training tab
    /// shows them); not a flag.
    #[arg(skip)]
    pub previews: usize,
}

/// The normalisation `--normalization` asks for (auto: by the kind of data, see the flag).
fn normalization(
    a: &TrainJob,
    of_volumes: bool,
    first: Option<&medseg_data::dataset::Loaded>,
) -> Result<Normalization, JobError> {
    Ok(match a.normalization.as_str() {
        "minmax" => Normalization::RgbMinMax255,
        "zscore" => Normalization::MrZScore,
        "ct" => Normalization::CT_ABDOMEN,
        "auto" if !of_volumes => Normalization::RgbMinMax255,
        "auto" => match first.and_then(|l| l.image.source.modality.as_deref()) {
            Some("CT") => Normalization::CT_ABDOMEN,
            _ => Normalization::MrZScore,
        },
        other => {
            return Err(JobError::Invalid(format!(
                "--normalization {other}: expected auto, minmax, zscore or ct"
            )))
        }
    })
}

/// The foreground class names: --class-names, else the dataset's classes.json (background
/// first; an empty list when there is none).
pub fn class_names(a: &TrainJob) -> Result<Vec<String>, JobError> {
    if !a.class_names.is_empty() {
        return Ok(a.class_names.clone());
    }
    let path = a.data.join("classes.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JobError::Invalid(format!("{}: {e}", path.display()))),
    };
    let names: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        JobError::Invalid(format!(
            "{}: expected a JSON list of class names, background first: {e}",
            path.display()
        ))
    })?;
    if names.len() < 2 {
        return Err(JobError::Invalid(format!(
            "{}: names {} class(es); it lists the background and at least one class",
            path.display(),
            names.len()
        )));
    }
    Ok(names[1..].to_vec())
}

/// The network configuration the job asks for, checked: more than one foreground class gives
/// the network one output per class.
pub fn net_config(a: &TrainJob) -> Result<NetConfig, JobError> {
    let names = class_names(a)?;
    if a.instances && !a.class_names.is_empty() {
        return Err(JobError::Invalid(
            "--instances trains the classes interior and boundary; drop --class-names".into(),
        ));
    }
    let mut net_cfg = NetConfig::by_name(&a.model, a.size)
        .map_err(JobError::Invalid)?
        // An instance model learns background, interior and boundary.
        .with_classes(if a.instances { 3 } else { names.len() + 1 });
    if let NetConfig::Usema(c) = &mut net_cfg {
        if a.window == 0 {
            return Err(JobError::Invalid("--window must be positive".into()));
        }
        c.window = a.window;
        c.mean_term = !a.no_mean_term;
    } else if a.no_mean_term || a.window != 16 {
        return Err(JobError::Invalid(
            "--window and --no-mean-term apply to --model usema only".into(),
        ));
    }
    if let Some(c) = a.width {
        net_cfg = net_cfg.with_width(c).map_err(JobError::Invalid)?;
    }
    let stride = net_cfg.stride();
    if a.size == 0 || !a.size.is_multiple_of(stride) {
        return Err(JobError::Invalid(format!(
            "--size {} must be a positive multiple of {stride} for {}",
            a.size, a.model
        )));
    }
    Ok(net_cfg)
}

/// The job's settings and its output folder, checked before anything is loaded or started
/// (the CLI calls it before creating the GPU device): the network configuration.
pub fn check(a: &TrainJob) -> Result<NetConfig, JobError> {
    let net_cfg = net_config(a)?;
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        return Err(JobError::Invalid(format!("--lr {} must be positive", a.lr)));
    }
    if !(0.0..1.0).contains(&a.val_fraction) {
        return Err(JobError::Invalid(format!(
            "--val-fraction {} must be in [0, 1)",
            a.val_fraction
        )));
    }
    if a.epochs == 0 || a.batch == 0 {
        return Err(JobError::Invalid(
            "--epochs and --batch must be positive".into(),
        ));
    }
    normalization(a, false, None)?;
    check_out_dir(&a.out, a.resume)?;
    Ok(net_cfg)
}

/// Runs the job on `ctx`. Each epoch's row goes to `r.log` (a Markdown table), step progress
/// to `r.progress`; cancelling stops after the current step and saves the state there.
pub fn train(a: &TrainJob, ctx: &GpuContext, r: &dyn Reporter) -> Result<TrainSummary, JobError> {
    train_observed(a, ctx, r, &mut |_| {})
}

/// [`train`], with every step and epoch also passed to `observe` (the training tab's curves).
pub fn train_observed(
    a: &TrainJob,
    ctx: &GpuContext,
    r: &dyn Reporter,
    observe: &mut dyn FnMut(&Event),
) -> Result<TrainSummary, JobError> {
    let net_cfg = check(a)?;
    let names = if a.instances {
        Vec::new()
    } else {
        class_names(a)?
    };
    // Instance ids are any values: only the pairs' kind and pixels are checked.
    let classes = if a.instances {
        2
    } else {
        net_cfg.label_classes()
    };
    // Instance ids are kept in labels/ where a dataset has binary masks/ beside them.
    let ds = if a.instances {
        Dataset::scan_with(&a.data, &["labels", "masks"])?
    } else {
        Dataset::scan(&a.data)?
    };
    for w in ds.warnings() {
        r.log(&format!("warning: {w}"));
    }
    let default_split = a.data.join("split.json");
    let split = match a
        .split
        .as_ref()
        .or(default_split.exists().then_some(&default_split))
    {
        Some(f) => ds.split_from_file(f)?,
        None => ds.split(a.seed, a.val_fraction),
    };
    let take = |v: Vec<_>, n: Option<usize>| -> Vec<_> {
        let n = n.unwrap_or(usize::MAX);
        v.into_iter().take(n).collect()
    };
    let (train_pairs, val_pairs) = (
        take(split.train, a.limit_train),
        take(split.val, a.limit_val),
    );
    r.log(&format!(
        "loading {} training and {} validation pairs from {}",
        train_pairs.len(),
        val_pairs.len(),
        a.data.display()
    ));
    r.progress("loading the dataset", None);
    let mut masks = a.masks.options();
    if a.instances {
        // Instance ids: any number of distinct values.
        masks.max_labels = u16::MAX as usize;
    }
    let (tr, bad_t) = load_pairs(&train_pairs, &masks);
    let (va, bad_v) = load_pairs(&val_pairs, &masks);
    for (p, e) in bad_t.iter().chain(&bad_v) {
        r.log(&format!("skipped {}: {e}", p.stem));
    }
    // One unusable pair (a volume, NaN pixels) is skipped and listed, never the whole run.
    let usable = |loaded: Vec<_>| -> Vec<_> {
        loaded
            .into_iter()
            .filter(|l| match trainer::check_sample(l, classes) {
                Ok(()) => true,
                Err(e) => {
                    r.log(&format!("skipped {}: {e}", l.pair.stem));
                    false
                }
            })
            .collect()
    };
    // Volumes train slice by slice (axial: the third voxel axis); a dataset is of volumes or
    // of 2-D images, and a pair of the other kind is skipped.
    let volumes = tr.iter().filter(|l| l.image.geometry.dims[2] > 1).count();
    let of_volumes = 2 * volumes > tr.len();
    if a.instances && of_volumes {
        return Err(JobError::Invalid(
            "--instances trains on 2-D images; this dataset holds volumes".into(),
        ));
    }
    let norm = normalization(a, of_volumes, tr.first())?;
    let keep_kind = |loaded: Vec<medseg_data::dataset::Loaded>| -> Vec<_> {
        loaded
            .into_iter()
            .filter(|l| {
                let volume = l.image.geometry.dims[2] > 1;
                if volume != of_volumes {
                    r.log(&format!(
                        "skipped {}: {}",
                        l.pair.stem,
                        if volume {
                            "a volume in a dataset of 2-D images"
                        } else {
                            "a 2-D image in a dataset of volumes"
                        }
                    ));
                }
                volume == of_volumes
            })
            .collect()
    };
    let (tr, va) = (keep_kind(tr), keep_kind(va));
    // A volume is normalised whole before slicing (a z-score over the volume, as Segment
    // does); 2-D images and min–max work per image, as Segment does per slice.
    let (whole, per_image) = if of_volumes && norm != Normalization::RgbMinMax255 {
        (norm, Normalization::None)
    } else {
        (Normalization::None, norm)
    };
    let (train_volumes, val_count) = (tr.len(), va.len());
    let slice_all = |v: Vec<_>| -> Vec<_> {
        v.into_iter()
            .flat_map(|l| trainer::slices(l, whole))
            .collect()
    };
    let (tr, va) = (slice_all(tr), slice_all(va));
    if of_volumes {
        r.log(&format!(
            "{} training and {} validation slices from {train_volumes} and {val_count} volumes",
            tr.len(),
            va.len(),
        ));
    }
    let (tr, va) = (usable(tr), usable(va));
    // Each validation volume's slices that are left, consecutive: its share of the samples.
    let mut val_volumes: Vec<usize> = Vec::new();
    if of_volumes {
        for (i, l) in va.iter().enumerate() {
            match i.checked_sub(1).map(|j| &va[j].pair.image) {
                Some(prev) if *prev == l.pair.image => *val_volumes.last_mut().expect("one") += 1,
                _ => val_volumes.push(1),
            }
        }
    }
    if tr.is_empty() {
        return Err(JobError::Invalid(format!(
            "none of the {} training pairs in {} could be used (see the lines above)",
            train_pairs.len(),
            a.data.display()
        )));
    }
    let (train_samples, val_samples) = if a.instances {
        use medseg_model::train::instances;
        let train = instances::training_tiles(&tr, a.size, per_image).map_err(JobError::Failed)?;
        r.log(&format!(
            "{} training tiles of {}² from {} images",
            train.len(),
            a.size,
            tr.len()
        ));
        (
            train,
            instances::validation_images(&va, per_image).map_err(JobError::Failed)?,
        )
    } else {
        (
            trainer::prepare(&tr, a.size, classes, per_image).map_err(JobError::Failed)?,
            trainer::prepare(&va, a.size, classes, per_image).map_err(JobError::Failed)?,
        )
    };
    let device = ctx.autodiff_device();
    let mut cfg = TrainConfig::reference(net_cfg, a.epochs);
    cfg.batch = a.batch;
    cfg.size = a.size;
    cfg.seed = a.seed;
    cfg.previews = a.previews;
    cfg.input.normalization = norm;
    cfg.val_volumes = val_volumes;
    cfg.schedule.max_lr = a.lr;
    cfg.schedule.min_lr = a.lr / 100.0;
    if !names.is_empty() {
        cfg.input.classes = std::iter::once("background".to_string())
            .chain(names)
            .collect();
    }
    if a.instances {
        cfg.instances = true;
        cfg.input.instances = true;
        cfg.input.fit = medseg_data::preprocess::Fit::Tiles;
        cfg.input.classes = medseg_model::train::instances::class_names();
    }
    if a.resume && a.init.is_some() {
        return Err(JobError::Invalid(
            "--init starts a new run; it cannot be combined with --resume".into(),
        ));
    }
    let (mut net, mut state) = if a.resume {
        let (net, state) = medseg_model::train::checkpoint::load_state(&a.out, &cfg, &device)?;
        r.log(&format!(
            "resuming at epoch {} of {}{}",
            state.next_epoch + 1,
            cfg.epochs,
            match state.next_step {
                0 => String::new(),
                s => format!(", step {}", s + 1),
            }
        ));
        (net, state)
    } else {
        if a.out.join("state.json").exists() {
            return Err(JobError::Invalid(format!(
                "{} already holds a run; continue it with --resume or choose another --out",
                a.out.display()
            )));
        }
        let net = match &a.init {
            Some(path) => {
                let net = medseg_model::train::checkpoint::load_official(path, &cfg.net, &device)?;
                r.log(&format!("starting from the weights in {}", path.display()));
                net
            }
            None => trainer::init_network(&cfg.net, cfg.seed, &device).map_err(JobError::Failed)?,
        };
        (net, TrainState::new(&cfg))
    };
    // The state (weights and two AdamW moments) and the best and last checkpoints, with room
    // for one state being replaced by the next.
    check_room(&a.out, trainer::parameters(&mut net) as u64 * 4 * 8)?;
    let started = std::time::Instant::now();
    let mut log = RunLog::open(&a.out)?;
    log.write(&serde_json::json!({
        "event": "start", "model": trainer::model_name(&cfg.net), "config": cfg.net.to_json(),
        "epochs": cfg.epochs, "batch": cfg.batch, "size": cfg.size, "seed": cfg.seed,
        "train_images": train_samples.len(), "val_images": val_samples.len(),
        "adapter": ctx.adapter.name, "next_epoch": state.next_epoch + 1,
        "next_step": state.next_step + 1,
    }));
    // The first epoch of a process includes compiling every kernel (minutes on some drivers),
    // so the time limit is judged from the later epochs once there are any.
    let mut longest_epoch = 0.0f64;
    let mut epochs_here = 0usize;
    let mut time_up = false;
    r.log(&format!(
        "training {} ({} parameters) on {}: {} epochs, batch {}, {}², {} train / {} val images",
        trainer::model_name(&cfg.net),
        trainer::parameters(&mut net),
        ctx.adapter.name,
        cfg.epochs,
        cfg.batch,
        cfg.size,
        train_samples.len(),
        val_samples.len()
    ));
    r.log("| epoch | lr | train loss | val DSC | s | train img/s | pool GiB |");
    r.log("|---|---|---|---|---|---|---|");
    // The GPU runtime reports running out of memory (or a dispatch over the device's limits)
    // by panicking: caught here, so the run ends with an error that says which batch fits (the
    // checkpoints of the finished epochs stay as they were).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trainer::train(
            &mut net,
            &cfg,
            &mut state,
            &train_samples,
            &val_samples,
            Some(&a.out),
            &mut |e| {
                observe(&e);
                match e {
                    Event::Step {
                        epoch,
                        step,
                        steps,
                        loss,
                    } => {
                        log.write(&serde_json::json!({
                            "event": "step", "epoch": epoch, "step": step, "loss": loss,
                        }));
                        r.progress(
                            &format!("epoch {epoch} of {}", cfg.epochs),
                            Some(step as f32 / steps.max(1) as f32),
                        ) && !r.cancelled()
                    }
                    Event::Previews { .. } => !r.cancelled(),
                    Event::Epoch(e) => {
                        // The allocator's reserved pool: the high-water mark of the epoch's buffers.
                        let pool = device
                            .memory_pool_usage()
                            .map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64);
                        let mut row = serde_json::to_value(e).unwrap_or_default();
                        row["event"] = "epoch".into();
                        row["pool_gib"] = pool.into();
                        log.write(&row);
                        log.flush();
                        r.log(&format!(
                            "| {} | {:.3e} | {:.4} | {} | {:.1} | {:.1} | {} |",
                            e.epoch,
                            e.lr,
                            e.train_loss,
                            e.val_dsc.map(|d| format!("{d:.4}")).unwrap_or("-".into()),
                            e.seconds,
                            e.train_images_per_s,
                            pool.map(|p| format!("{p:.2}")).unwrap_or("-".into())
                        ));
                        if let (Some(f1), Some(p), Some(rc)) =
                            (e.val_cell_f1, e.val_cell_precision, e.val_cell_recall)
                        {
                            r.log(&format!(
                                "  validation cell F1 {f1:.4} (precision {p:.4}, recall {rc:.4})"
                            ));
                        }
                        if let Some(per_class) = &e.val_dsc_per_class {
                            let parts: Vec<String> = per_class
                                .iter()
                                .zip(cfg.input.classes.iter().skip(1))
                                .map(|(d, name)| match d {
                                    Some(d) => format!("{name} {d:.4}"),
                                    None => format!("{name} -"),
                                })
                                .collect();
                            r.log(&format!("  validation DSC per class: {}", parts.join(", ")));
                        }
                        epochs_here += 1;
                        if epochs_here == 2 {
                            longest_epoch = e.seconds;
                        } else {
                            longest_epoch = longest_epoch.max(e.seconds);
                        }
                        if let (Some(m), true) = (a.stop_after_minutes, epochs_here >= 2) {
                            let left = m * 60.0 - started.elapsed().as_secs_f64();
                            if left < 1.2 * longest_epoch {
                                time_up = true;
                                return false;
                            }
                        }
                        !r.cancelled()
                    }
                }
            },
        )
    }));
    let result = result.unwrap_or_else(|panic| {
        let message = medseg_model::gpu::panic_message(panic.as_ref());
        let cause = medseg_model::gpu::failure_summary(&message);
        if !medseg_model::gpu::is_too_large(&message) {
            return Err(format!("the GPU runtime failed: {cause}"));
        }
        r.log("the batch did not fit the GPU; trying smaller batches to see which fits");
        let advice = match fitting_batch(&cfg.net, cfg.size, cfg.batch, r) {
            Some(b) => format!("batch {b} fits: run again with --batch {b}"),
            None => "no smaller batch fits either (or they could not be tried): try a smaller \
                     --batch, --size or --width"
                .into(),
        };
        Err(format!(
            "batch {1} of {2}² does not fit this GPU for {0} ({cause}); {advice}{3}",
            trainer::model_name(&cfg.net),
            cfg.batch,
            cfg.size,
            if state.next_epoch > 0 {
                format!(
                    " (the finished epochs' checkpoints are kept in {}; --init {} starts \
                     from the last one)",
                    a.out.display(),
                    a.out.join("last.safetensors").display()
                )
            } else {
                String::new()
            }
        ))
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            log.write(&serde_json::json!({"event": "error", "message": e}));
            log.flush();
            return Err(JobError::Failed(e));
        }
    };
    let stopped = if !summary.cancelled {
        None
    } else if time_up {
        Some("the time limit")
    } else {
        Some("a stop request")
    };
    if let Some(why) = stopped {
        r.log(&format!(
            "stopped by {why}: saved at epoch {}{}; continue with --resume",
            state.next_epoch + 1,
            match state.next_step {
                0 => " (start)".to_string(),
                s => format!(", step {}", s + 1),
            }
        ));
    }
    let report = serde_json::json!({
        "model": trainer::model_name(&cfg.net),
        "out": a.out,
        "epochs_done": state.next_epoch,
        "epochs": cfg.epochs,
        "next_step": state.next_step,
        "stopped_by": stopped,
        "best_epoch": summary.best_epoch,
        "best_val_dsc": summary.best_val_dsc,
        "best_val_cell_f1": summary.best_val_cell_f1,
        "last": summary.epochs.last(),
        "seconds": started.elapsed().as_secs_f64(),
        "adapter": ctx.adapter.name,
    });
    log.write(&serde_json::json!({"event": "end", "report": report}));
    log.flush();
    let body = serde_json::to_vec_pretty(&report).map_err(|e| JobError::Failed(e.to_string()))?;
    for path in std::iter::once(a.out.join("report.json")).chain(a.json.clone()) {
        medseg_data::atomic::write_atomic(&path, true, |w| w.write_all(&body))?;
    }
    if let (Some(e), Some(d)) = (summary.best_epoch, summary.best_val_dsc) {
        // Instance runs keep the best cell F1; the pooled DSC of that epoch is beside it.
        let best = match summary.best_val_cell_f1 {
            Some(f1) => format!("best val cell F1 {f1:.4} (DSC {d:.4})"),
            None => format!("best val DSC {d:.4}"),
        };
        r.log(&format!(
            "{best} at epoch {e}; checkpoints in {}",
            a.out.display()
        ));
    }
    Ok(summary)
}

/// `OUT/log.jsonl`: one JSON object per line — the run's start (each resume adds one), every
/// step's loss, every epoch's numbers, an error or the end with the final report. Appended, so
/// a resumed run's log holds the whole history; a line that cannot be written is reported once
/// and training goes on (the checkpoints are what must not be lost).
struct RunLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
}

impl RunLog {
    fn open(out: &Path) -> Result<Self, JobError> {
        let path = out.join("log.jsonl");
        // A run killed mid-line leaves a partial last line: start on a fresh one.
        let torn = (|| -> std::io::Result<bool> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&path)?;
            if f.metadata()?.len() == 0 {
                return Ok(false);
            }
            f.seek(SeekFrom::End(-1))?;
            let mut last = [0u8];
            f.read_exact(&mut last)?;
            Ok(last[0] != b'\n')
        })()
        .unwrap_or(false);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| JobError::Invalid(format!("cannot write {}: {e}", path.display())))?;
        let mut log = RunLog {
            file: Some(std::io::BufWriter::new(file)),
            path,
        };
        if torn {
            if let Some(f) = &mut log.file {
                let _ = writeln!(f);
            }
        }
        Ok(log)
    }

    fn write(&mut self, value: &serde_json::Value) {
        if let Some(f) = &mut self.file {
            if let Err(e) = writeln!(f, "{value}") {
                eprintln!("warning: {}: {e}; the log stops here", self.path.display());
                self.file = None;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            if let Err(e) = f.flush() {
                eprintln!("warning: {}: {e}; the log stops here", self.path.display());
                self.file = None;
            }
        }
    }
}

/// Refuses an output folder that cannot be created or written before any training time is
/// spent.
fn check_out_dir(out: &Path, resume: bool) -> Result<(), JobError> {
    let fail = |what: String| JobError::Invalid(format!("--out {}: {what}", out.display()));
    if resume && !out.join("state.json").exists() {
        return Err(fail("holds no run to resume (no state.json)".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| fail(format!("cannot create it ({e})")))?;
    let probe = out.join(".medseg-write-test");
    medseg_data::atomic::write_atomic(&probe, true, |w| w.write_all(b"medseg"))
        .map_err(|e| fail(format!("cannot write there ({e})")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Refuses an output folder whose disk has less than `bytes` free (where the platform tells).
fn check_room(out: &Path, bytes: u64) -> Result<(), JobError> {
    let Some(free) = free_bytes(out) else {
        return Ok(());
    };
    if free < bytes {
        return Err(JobError::Invalid(format!(
            "--out {}: {} MiB free on its disk; the checkpoints of this run need about {} MiB",
            out.display(),
            free >> 20,
            bytes.div_ceil(1 << 20)
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// The largest batch below `failed` (halving from it) whose training step fits the GPU, each
/// tried by `medseg probe-step` in a fresh process (after a failed dispatch the runtime may
/// refuse all later work on this process's device); None when none fits, when asked to stop,
/// or when this program is not the `medseg` binary (a test harness).
fn fitting_batch(net: &NetConfig, size: usize, failed: usize, r: &dyn Reporter) -> Option<usize> {
    let exe = std::env::current_exe().ok()?;
    if !exe
        .file_stem()
        .is_some_and(|n| n.to_string_lossy().starts_with("medseg"))
    {
        return None;
    }
    let config = net.to_json().to_string();
    let mut b = failed / 2;
    while b >= 1 {
        if !r.progress(&format!("trying batch {b}"), None) || r.cancelled() {
            return None;
        }
        let fits = std::process::Command::new(&exe)
            .args([
                "probe-step",
                "--model",
                trainer::model_name(net),
                "--config",
            ])
            .arg(&config)
            .args(["--size", &size.to_string(), "--batch", &b.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        r.log(&format!(
            "batch {b}: {}",
            if fits { "fits" } else { "does not fit" }
        ));
        if fits {
            return Some(b);
        }
        b /= 2;
    }
    None
}
