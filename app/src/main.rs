//! `medseg`: the desktop app (no arguments, or `medseg view`) and the command line.

use clap::{Parser, Subcommand};
use medseg_model::fixtures;
use medseg_model::gpu::GpuContext;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "medseg",
    version,
    about = "Medical image segmentation on any GPU (WGSL kernels through wgpu)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the desktop app on an image, volume or DICOM folder (the bundled CT sample when none
    /// is given); `medseg` with no command does the same.
    View {
        /// NIfTI/DICOM/PNG/JPEG/BMP/TIFF file or DICOM folder.
        image: Option<PathBuf>,
        /// A mask or label map to show over it.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Save a screenshot (PNG, plus a JSON of where each plane is drawn) once loaded, then quit.
        #[arg(long)]
        screenshot: Option<PathBuf>,
    },
    /// Show the GPU medseg would use: adapter, backend, driver and the limits that matter.
    /// Choose with MEDSEG_BACKEND (vulkan, metal, dx12, gl) and MEDSEG_ADAPTER (index or name).
    GpuInfo,
    /// Check our kernels and modules against the official-code fixtures in DIR
    /// (one line per file; non-zero exit when any file fails or none is checked).
    CheckFixtures {
        /// Directory of `*.safetensors` fixtures.
        dir: PathBuf,
    },
    /// Describe an image, a volume, a DICOM folder or a dataset folder: format, dims, datatype,
    /// spacing, the voxel → world affine, orientation letters and the intensity range.
    Info {
        /// A NIfTI/DICOM/PNG/JPEG/BMP/TIFF file, a DICOM folder or a dataset folder.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Score predicted masks against reference masks paired by file name (2-D PNG masks or
    /// NIfTI label maps on the same grid): DSC, IoU, precision, recall, specificity, accuracy,
    /// HD95 and ASSD in mm, NSD.
    Eval {
        /// Folder of predicted masks.
        #[arg(long)]
        pred: PathBuf,
        /// Folder of reference masks.
        #[arg(long)]
        gt: PathBuf,
        /// NSD tolerance in mm.
        #[arg(long, default_value_t = 2.0)]
        nsd_tolerance_mm: f64,
        /// Pixel spacing (mm) of 2-D raster masks, which store none.
        #[arg(long, default_value_t = 1.0)]
        spacing_mm: f64,
        /// Also write the per-case results and means as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Train SA-UMamba, VM-UNet or USEMA on a dataset folder (images/ + masks/) with the
    /// reference protocol: official initialisation (USEMA: He) and augmentation, the network's
    /// loss (BceDice; USEMA: deep-supervised Dice + CE), AdamW, cosine 1e-3 → 1e-5.
    /// Writes best/last checkpoints (safetensors + JSON) and history.json to OUT.
    Train {
        /// sa-umamba (as released), sa-umamba-paper (RSSS decoder blocks too), vm-unet or usema.
        #[arg(long, default_value = "sa-umamba")]
        model: String,
        /// USEMA: SEMA window side (16 or 32 in the paper).
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// USEMA: drop SEMA's global mean-of-V term (the paper's ablation).
        #[arg(long)]
        no_mean_term: bool,
        /// Dataset folder with images/ and masks/ paired by name.
        #[arg(long)]
        data: PathBuf,
        /// Output folder for checkpoints and the history.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 39)]
        epochs: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Input side (a multiple of the network's stride: 32; USEMA 2^(stages-1), 64 at 256).
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Train/val split JSON ({"train": [...], "val": [...]}); default DATA/split.json when it
        /// exists, else a seeded 80/20 split.
        #[arg(long)]
        split: Option<PathBuf>,
        /// Use only the first N training images (quick runs).
        #[arg(long)]
        limit_train: Option<usize>,
        /// Use only the first N validation images.
        #[arg(long)]
        limit_val: Option<usize>,
        /// Continue the run saved in OUT (state.json / state.safetensors).
        #[arg(long)]
        resume: bool,
        /// Stop cleanly after the epoch that leaves too little time for another within this
        /// many minutes (continue later with --resume).
        #[arg(long)]
        stop_after_minutes: Option<f64>,
        /// Start from these weights instead of the initialisation: an official checkpoint
        /// (PyTorch .pth/.pt or .safetensors, official parameter names) or a medseg checkpoint's
        /// .safetensors. Refused, with the first mismatches listed, when it does not fit --model.
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Whole networks (the configurations `medseg train` uses, random weights): inference at
    /// batch 1 and 16, training steps (forward, backward, AdamW) at batch 8, against the
    /// official code's H100 figures.
    Model {
        /// Networks to time (sa-umamba, sa-umamba-paper, vm-unet, usema).
        #[arg(long, value_delimiter = ',', default_values_t = ["sa-umamba".to_string(), "vm-unet".to_string()])]
        models: Vec<String>,
        /// Input side in pixels (a multiple of each network's stride: 32; USEMA 64 at 256).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Timed runs per measurement (the median is reported).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Selective scan at SA-UMamba's stage shapes vs a device-to-device copy and the CUDA kernel.
    Scan {
        /// Batch size (BASELINE.md uses 16).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed iterations per measurement.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Stages to run (1..=4).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3, 4])]
        stages: Vec<usize>,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Checkpoint chunks (32 positions) per work item; 0 chooses from the problem size.
        #[arg(long, default_value_t = 0)]
        group_chunks: usize,
    },
}

fn gpu() -> Result<GpuContext, String> {
    GpuContext::create().map_err(|e| e.to_string())
}

fn gpu_info() -> Result<(), String> {
    let ctx = gpu()?;
    let a = &ctx.adapter;
    let l = &ctx.limits;
    println!("adapter:   {}", a.name);
    println!("backend:   {}", a.backend);
    println!("type:      {}", a.device_type);
    println!("driver:    {} {}", a.driver, a.driver_info);
    println!(
        "ids:       vendor {:#06x}, device {:#06x}",
        a.vendor, a.device_id
    );
    println!(
        "features:  subgroups {}, shader-f16 {}, timestamp-query {}",
        a.subgroups, a.shader_f16, a.timestamp_query
    );
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size      {} MiB",
        l.max_storage_buffer_binding_size >> 20
    );
    println!(
        "  max_buffer_size                      {} MiB",
        l.max_buffer_size >> 20
    );
    println!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroup_storage_size   {} KiB",
        l.max_compute_workgroup_storage_size >> 10
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    medseg_model::gpu::kernel_self_test(&ctx.device)?;
    println!("kernels:   our selective scan ran and gave the known answer");
    Ok(())
}

fn check_fixtures(dir: &Path) -> Result<bool, String> {
    let ctx = gpu()?;
    println!(
        "checking fixtures in {} on {} ({})",
        dir.display(),
        ctx.adapter.name,
        ctx.adapter.backend
    );
    let report = fixtures::check_dir(dir, &ctx.device, ctx.adapter.is_software(), |f| {
        println!("{}", f.line())
    })?;
    let failed = report.files.iter().filter(|f| !f.passed()).count();
    println!(
        "{} checked, {} failed, {} not checked",
        report.checked(),
        failed,
        report.files.len() - report.checked()
    );
    if report.checked() == 0 {
        eprintln!(
            "error: no fixture file with a known prefix in {}",
            dir.display()
        );
    }
    Ok(report.passed())
}

fn bench_scan(
    batch: usize,
    iters: usize,
    stages: &[usize],
    json: Option<&PathBuf>,
    group_chunks: usize,
) -> Result<(), String> {
    let ctx = gpu()?;
    let result = medseg_model::bench::bench_scan(&ctx, batch, iters.max(1), stages, group_chunks)?;
    print!("{}", result.table());
    write_json(json, &result)
}

/// Writes `value` as pretty JSON to `path` (atomically) when one was given.
fn write_json(path: Option<&PathBuf>, value: &impl serde::Serialize) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    medseg_data::atomic::write_atomic(path, true, |w| w.write_all(text.as_bytes()))
        .map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    Ok(())
}

fn info(path: &Path, json: bool) -> Result<(), String> {
    let info = medseg_data::info::info(path).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", info.to_text());
    }
    Ok(())
}

fn eval(
    pred: &Path,
    gt: &Path,
    tau: f64,
    spacing: f64,
    json: Option<&PathBuf>,
) -> Result<(), String> {
    let valid = tau >= 0.0 && tau.is_finite() && spacing > 0.0 && spacing.is_finite();
    if !valid {
        return Err("--nsd-tolerance-mm must be ≥ 0 and --spacing-mm > 0".into());
    }
    let opts = medseg_data::evaluate::EvalOptions {
        nsd_tolerance_mm: tau,
        raster_spacing_mm: [spacing, spacing],
    };
    let report = medseg_data::evaluate::evaluate(pred, gt, &opts, &mut |_, _| true)
        .map_err(|e| e.to_string())?;
    print!("{}", report.to_text());
    write_json(json, &report)
}

fn bench_model(
    models: &[String],
    size: usize,
    iters: usize,
    json: Option<&PathBuf>,
) -> Result<(), String> {
    let ctx = gpu()?;
    let result = medseg_model::bench::bench_model(&ctx, models, size, iters)?;
    print!("{}", result.table());
    write_json(json, &result)
}

struct TrainArgs {
    model: String,
    window: usize,
    no_mean_term: bool,
    data: PathBuf,
    out: PathBuf,
    epochs: usize,
    batch: usize,
    size: usize,
    seed: u64,
    split: Option<PathBuf>,
    limit_train: Option<usize>,
    limit_val: Option<usize>,
    resume: bool,
    stop_after_minutes: Option<f64>,
    init: Option<PathBuf>,
}

fn train(a: TrainArgs) -> Result<(), String> {
    use medseg_data::dataset::{load_pairs, Dataset};
    use medseg_model::nn::net::NetConfig;
    use medseg_model::train::trainer::{self, Event, TrainConfig, TrainState};
    let mut net_cfg = NetConfig::by_name(&a.model, a.size)?;
    if let NetConfig::Usema(c) = &mut net_cfg {
        if a.window == 0 {
            return Err("--window must be positive".into());
        }
        c.window = a.window;
        c.mean_term = !a.no_mean_term;
    } else if a.no_mean_term || a.window != 16 {
        return Err("--window and --no-mean-term apply to --model usema only".into());
    }
    let stride = net_cfg.stride();
    if a.size == 0 || !a.size.is_multiple_of(stride) {
        return Err(format!(
            "--size {} must be a positive multiple of {stride} for {}",
            a.size, a.model
        ));
    }
    let ds = Dataset::scan(&a.data).map_err(|e| e.to_string())?;
    for w in ds.warnings() {
        eprintln!("warning: {w}");
    }
    let default_split = a.data.join("split.json");
    let split = match a
        .split
        .as_ref()
        .or(default_split.exists().then_some(&default_split))
    {
        Some(f) => ds.split_from_file(f).map_err(|e| e.to_string())?,
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
    eprintln!(
        "loading {} training and {} validation pairs from {}",
        train_pairs.len(),
        val_pairs.len(),
        a.data.display()
    );
    let (tr, bad_t) = load_pairs(&train_pairs);
    let (va, bad_v) = load_pairs(&val_pairs);
    for (p, e) in bad_t.iter().chain(&bad_v) {
        eprintln!("skipped {}: {e}", p.stem);
    }
    let train_samples = trainer::prepare(&tr, a.size)?;
    let val_samples = trainer::prepare(&va, a.size)?;
    let ctx = gpu()?;
    let device = ctx.autodiff_device();
    let mut cfg = TrainConfig::reference(net_cfg, a.epochs);
    cfg.batch = a.batch;
    cfg.size = a.size;
    cfg.seed = a.seed;
    if a.resume && a.init.is_some() {
        return Err("--init starts a new run; it cannot be combined with --resume".into());
    }
    let (mut net, mut state) = if a.resume {
        let (net, state) = medseg_model::train::checkpoint::load_state(&a.out, &cfg, &device)?;
        eprintln!(
            "resuming at epoch {} of {}",
            state.next_epoch + 1,
            cfg.epochs
        );
        (net, state)
    } else {
        if a.out.join("state.json").exists() {
            return Err(format!(
                "{} already holds a run; continue it with --resume or choose another --out",
                a.out.display()
            ));
        }
        let net = match &a.init {
            Some(path) => {
                let net = medseg_model::train::checkpoint::load_official(path, &cfg.net, &device)?;
                eprintln!("starting from the weights in {}", path.display());
                net
            }
            None => trainer::init_network(&cfg.net, cfg.seed, &device)?,
        };
        (net, TrainState::new(&cfg))
    };
    let started = std::time::Instant::now();
    // The first epoch of a process includes compiling every kernel (minutes on some drivers),
    // so the time limit is judged from the later epochs once there are any.
    let mut longest_epoch = 0.0f64;
    let mut epochs_here = 0usize;
    eprintln!(
        "training {} ({} parameters) on {}: {} epochs, batch {}, {}², {} train / {} val images",
        trainer::model_name(&cfg.net),
        trainer::parameters(&mut net),
        ctx.adapter.name,
        cfg.epochs,
        cfg.batch,
        cfg.size,
        train_samples.len(),
        val_samples.len()
    );
    println!("| epoch | lr | train loss | val DSC | s | train img/s | pool GiB |");
    println!("|---|---|---|---|---|---|---|");
    let summary = trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train_samples,
        &val_samples,
        Some(&a.out),
        &mut |e| {
            if let Event::Epoch(r) = e {
                // The allocator's reserved pool: the high-water mark of the epoch's buffers.
                let pool = device
                    .memory_pool_usage()
                    .map(|u| format!("{:.2}", u.bytes_reserved as f64 / (1u64 << 30) as f64))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "| {} | {:.3e} | {:.4} | {} | {:.1} | {:.1} | {pool} |",
                    r.epoch,
                    r.lr,
                    r.train_loss,
                    r.val_dsc.map(|d| format!("{d:.4}")).unwrap_or("-".into()),
                    r.seconds,
                    r.train_images_per_s
                );
                epochs_here += 1;
                if epochs_here == 2 {
                    longest_epoch = r.seconds;
                } else {
                    longest_epoch = longest_epoch.max(r.seconds);
                }
                if let (Some(m), true) = (a.stop_after_minutes, epochs_here >= 2) {
                    let left = m * 60.0 - started.elapsed().as_secs_f64();
                    if left < 1.2 * longest_epoch {
                        eprintln!("stopping before the time limit; continue with --resume");
                        return false;
                    }
                }
            }
            true
        },
    )?;
    if let (Some(e), Some(d)) = (summary.best_epoch, summary.best_val_dsc) {
        eprintln!(
            "best val DSC {d:.4} at epoch {e}; checkpoints in {}",
            a.out.display()
        );
    }
    Ok(())
}

fn view(startup: medseg::gui::Startup) -> ExitCode {
    match medseg::gui::run(startup) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = &cli.command else {
        return view(medseg::gui::Startup::default());
    };
    let result = match command {
        Command::View {
            image,
            labels,
            screenshot,
        } => {
            return view(medseg::gui::Startup {
                image: image.clone(),
                labels: labels.clone(),
                screenshot: screenshot.clone(),
            })
        }
        Command::Train {
            model,
            window,
            no_mean_term,
            data,
            out,
            epochs,
            batch,
            size,
            seed,
            split,
            limit_train,
            limit_val,
            resume,
            stop_after_minutes,
            init,
        } => train(TrainArgs {
            init: init.clone(),
            resume: *resume,
            stop_after_minutes: *stop_after_minutes,
            model: model.clone(),
            window: *window,
            no_mean_term: *no_mean_term,
            data: data.clone(),
            out: out.clone(),
            epochs: *epochs,
            batch: *batch,
            size: *size,
            seed: *seed,
            split: split.clone(),
            limit_train: *limit_train,
            limit_val: *limit_val,
        })
        .map(|_| true),
        Command::GpuInfo => gpu_info().map(|_| true),
        Command::CheckFixtures { dir } => check_fixtures(dir),
        Command::Info { path, json } => info(path, *json).map(|_| true),
        Command::Eval {
            pred,
            gt,
            nsd_tolerance_mm,
            spacing_mm,
            json,
        } => eval(pred, gt, *nsd_tolerance_mm, *spacing_mm, json.as_ref()).map(|_| true),
        Command::Bench {
            what:
                BenchCommand::Scan {
                    batch,
                    iters,
                    stages,
                    json,
                    group_chunks,
                },
        } => bench_scan(*batch, *iters, stages, json.as_ref(), *group_chunks).map(|_| true),
        Command::Bench {
            what:
                BenchCommand::Model {
                    models,
                    size,
                    iters,
                    json,
                },
        } => bench_model(models, *size, *iters, json.as_ref()).map(|_| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
