//! Train: a network on a dataset folder by the reference protocol, with checkpoints, resume and
//! a time limit. The CLI's `medseg train` and the app's training tab run this one job.

use super::{JobError, Reporter};
use medseg_data::dataset::{load_pairs, Dataset};
use medseg_model::gpu::GpuContext;
use medseg_model::nn::net::NetConfig;
use medseg_model::train::trainer::{self, Event, TrainConfig, TrainState, TrainSummary};
use std::path::PathBuf;

/// Everything a training run is started with.
#[derive(Clone, Debug)]
pub struct TrainJob {
    pub model: String,
    pub window: usize,
    pub no_mean_term: bool,
    pub width: Option<usize>,
    pub class_names: Vec<String>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub epochs: usize,
    pub batch: usize,
    pub size: usize,
    pub seed: u64,
    pub split: Option<PathBuf>,
    pub limit_train: Option<usize>,
    pub limit_val: Option<usize>,
    pub resume: bool,
    pub stop_after_minutes: Option<f64>,
    pub init: Option<PathBuf>,
}

/// The network configuration the job asks for, checked.
pub fn net_config(a: &TrainJob) -> Result<NetConfig, JobError> {
    let mut net_cfg = NetConfig::by_name(&a.model, a.size).map_err(JobError::Invalid)?;
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

/// Runs the job on `ctx`. Each epoch's row goes to `r.log` (a Markdown table), step progress
/// to `r.progress`; cancelling stops after the current step, with the last finished epoch saved.
pub fn train(a: &TrainJob, ctx: &GpuContext, r: &dyn Reporter) -> Result<TrainSummary, JobError> {
    let net_cfg = net_config(a)?;
    let ds = Dataset::scan(&a.data)?;
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
        None => ds.split(a.seed, 0.2),
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
    let (tr, bad_t) = load_pairs(&train_pairs);
    let (va, bad_v) = load_pairs(&val_pairs);
    for (p, e) in bad_t.iter().chain(&bad_v) {
        r.log(&format!("skipped {}: {e}", p.stem));
    }
    let train_samples = trainer::prepare(&tr, a.size).map_err(JobError::Failed)?;
    let val_samples = trainer::prepare(&va, a.size).map_err(JobError::Failed)?;
    let device = ctx.autodiff_device();
    let mut cfg = TrainConfig::reference(net_cfg, a.epochs);
    cfg.batch = a.batch;
    cfg.size = a.size;
    cfg.seed = a.seed;
    if !a.class_names.is_empty() {
        let k = cfg.net.classes().max(2);
        if a.class_names.len() != k - 1 {
            return Err(JobError::Invalid(format!(
                "--class-names names {} classes; {} has {} foreground class(es)",
                a.class_names.len(),
                a.model,
                k - 1
            )));
        }
        cfg.input.classes = std::iter::once("background".to_string())
            .chain(a.class_names.iter().cloned())
            .collect();
    }
    if a.resume && a.init.is_some() {
        return Err(JobError::Invalid(
            "--init starts a new run; it cannot be combined with --resume".into(),
        ));
    }
    let (mut net, mut state) = if a.resume {
        let (net, state) = medseg_model::train::checkpoint::load_state(&a.out, &cfg, &device)
            .map_err(JobError::Failed)?;
        r.log(&format!(
            "resuming at epoch {} of {}",
            state.next_epoch + 1,
            cfg.epochs
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
                let net = medseg_model::train::checkpoint::load_official(path, &cfg.net, &device)
                    .map_err(JobError::Failed)?;
                r.log(&format!("starting from the weights in {}", path.display()));
                net
            }
            None => trainer::init_network(&cfg.net, cfg.seed, &device).map_err(JobError::Failed)?,
        };
        (net, TrainState::new(&cfg))
    };
    let started = std::time::Instant::now();
    // The first epoch of a process includes compiling every kernel (minutes on some drivers),
    // so the time limit is judged from the later epochs once there are any.
    let mut longest_epoch = 0.0f64;
    let mut epochs_here = 0usize;
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
    let summary = trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train_samples,
        &val_samples,
        Some(&a.out),
        &mut |e| match e {
            Event::Step {
                epoch, step, steps, ..
            } => r.progress(
                &format!("epoch {epoch} of {}", cfg.epochs),
                Some(step as f32 / steps.max(1) as f32),
            ),
            Event::Epoch(e) => {
                // The allocator's reserved pool: the high-water mark of the epoch's buffers.
                let pool = device
                    .memory_pool_usage()
                    .map(|u| format!("{:.2}", u.bytes_reserved as f64 / (1u64 << 30) as f64))
                    .unwrap_or_else(|| "-".into());
                r.log(&format!(
                    "| {} | {:.3e} | {:.4} | {} | {:.1} | {:.1} | {pool} |",
                    e.epoch,
                    e.lr,
                    e.train_loss,
                    e.val_dsc.map(|d| format!("{d:.4}")).unwrap_or("-".into()),
                    e.seconds,
                    e.train_images_per_s
                ));
                epochs_here += 1;
                if epochs_here == 2 {
                    longest_epoch = e.seconds;
                } else {
                    longest_epoch = longest_epoch.max(e.seconds);
                }
                if let (Some(m), true) = (a.stop_after_minutes, epochs_here >= 2) {
                    let left = m * 60.0 - started.elapsed().as_secs_f64();
                    if left < 1.2 * longest_epoch {
                        r.log("stopping before the time limit; continue with --resume");
                        return false;
                    }
                }
                !r.cancelled()
            }
        },
    )
    .map_err(JobError::Failed)?;
    if let (Some(e), Some(d)) = (summary.best_epoch, summary.best_val_dsc) {
        r.log(&format!(
            "best val DSC {d:.4} at epoch {e}; checkpoints in {}",
            a.out.display()
        ));
    }
    Ok(summary)
}
