//! `medseg`: the desktop app (no arguments, or `medseg view`) and the command line.

use clap::{Parser, Subcommand};
use medseg::jobs::{
    self, segment::ModelRef, terminal::TerminalReporter, train::TrainJob, JobError,
};
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
    /// Serve the browser build (the folder `scripts/build-web.sh` writes) on 127.0.0.1, for a
    /// browser with WebGPU on this machine; files opened in the page stay in the page.
    ServeWeb {
        /// The folder with index.html, medseg_web.js and medseg_web_bg.wasm.
        dir: PathBuf,
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
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
        #[command(flatten)]
        masks: jobs::MaskArgs,
        /// The masks are instance label maps (0 background, each other value one cell): report
        /// the cell F1, precision and recall per image at IoU ≥ --iou instead.
        #[arg(long)]
        instances: bool,
        /// IoU at which an instance counts as found (with --instances).
        #[arg(long, default_value_t = 0.5)]
        iou: f64,
    },
    /// Train SA-UMamba, VM-UNet or USEMA on a dataset folder (images/ + masks/) with the
    /// reference protocol: official initialisation (USEMA: He) and augmentation, the network's
    /// loss (BceDice; USEMA: deep-supervised Dice + CE), AdamW, cosine from --lr (1e-3) to a
    /// hundredth of it. Writes best/last checkpoints (safetensors + JSON), the resumable state,
    /// history.json, log.jsonl and report.json to OUT. Also `medseg --train ...`.
    Train(Box<TrainJob>),
    /// Segment images, volumes or DICOM folders with a bundled model or a checkpoint; masks are
    /// written to OUT (PNG for 2-D raster images, NIfTI with the source's header otherwise).
    /// A file that fails is reported and the others go on; the exit status is non-zero if any
    /// failed.
    Predict {
        /// A bundled model (see `medseg models`).
        #[arg(long)]
        model: Option<String>,
        /// A medseg checkpoint (.json) or official weights (.pth, .pt, .safetensors).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Files and folders: a folder of images gives each image (and each sub-folder as a
        /// DICOM series); a folder holding only DICOM files is one series.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Foreground probability at which a pixel is labelled.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// Replace masks already in OUT.
        #[arg(long)]
        overwrite: bool,
        /// Also write a report (per file: output, error, seconds, sizes) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// List the bundled models.
    Models,
    /// Pack a training checkpoint as a compact model (f16 weights + JSON with a title), as the
    /// bundled models in assets/models are made.
    PackModel {
        /// The checkpoint's .json (e.g. OUT/best.json of `medseg train`).
        checkpoint: PathBuf,
        /// Output path without extension (writes OUT.json and OUT.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// What it segments, shown in the model picker.
        #[arg(long)]
        title: String,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Whether one training step (forward and backward, blank inputs) of a network fits the
    /// GPU at a batch and size: exit status 0 when it does. `medseg train` runs it in fresh
    /// processes after a batch did not fit, to say which one does.
    #[command(hide = true)]
    ProbeStep {
        #[arg(long)]
        model: String,
        /// The network's configuration as a checkpoint stores it (JSON).
        #[arg(long)]
        config: String,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time to the first mask, as Segment does it from a fresh process: GPU start, model load,
    /// the first segmentation of the bundled 256² colonoscopy frame (compiling kernels, or
    /// loading them from the kernel cache) and a second one. Run it twice to see the cold and
    /// the warm kernel cache (MEDSEG_KERNEL_CACHE chooses the folder).
    FirstMask {
        /// A model file (medseg checkpoint .json or official weights); by default a compact
        /// SA-UMamba (width 32, the bundled models' size) with the official initialisation.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
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
    /// The networks' convolution layers (USEMA's 3×3, the depthwise ones, RFAConv's, the 1×1),
    /// forward and forward + backward, with our WGSL kernels and with burn's own convolution.
    Conv {
        /// Batch size.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Timed runs per measurement (the mean is reported).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Leave out burn's convolution (its weight gradients are slow on large layers).
        #[arg(long)]
        no_burn: bool,
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
    let report =
        medseg_model::parity::check_dir(dir, &ctx.device, ctx.adapter.is_software(), |f| {
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
    masks: &jobs::MaskArgs,
    json: Option<&PathBuf>,
) -> Result<(), String> {
    let valid = tau >= 0.0 && tau.is_finite() && spacing > 0.0 && spacing.is_finite();
    if !valid {
        return Err("--nsd-tolerance-mm must be ≥ 0 and --spacing-mm > 0".into());
    }
    let opts = medseg_data::evaluate::EvalOptions {
        nsd_tolerance_mm: tau,
        raster_spacing_mm: [spacing, spacing],
        masks: masks.options(),
    };
    let report = medseg_data::evaluate::evaluate(pred, gt, &opts, &mut |_, _| true)
        .map_err(|e| e.to_string())?;
    print!("{}", report.to_text());
    write_json(json, &report)
}

fn eval_instances(pred: &Path, gt: &Path, iou: f64, json: Option<&PathBuf>) -> Result<(), String> {
    if !(iou > 0.0 && iou <= 1.0) {
        return Err(format!("--iou {iou} must be in (0, 1]"));
    }
    let report = medseg_data::evaluate::evaluate_instances(pred, gt, iou, &mut |_, _| true)
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

fn bench_conv(
    batch: usize,
    iters: usize,
    with_burn: bool,
    json: Option<&PathBuf>,
) -> Result<(), String> {
    let ctx = gpu()?;
    let result = medseg_model::bench::bench_conv(&ctx, batch.max(1), iters.max(1), with_burn)?;
    print!("{}", result.table());
    write_json(json, &result)
}

fn probe_step(model: &str, config: &str, size: usize, batch: usize) -> Result<bool, String> {
    let c: serde_json::Value =
        serde_json::from_str(config).map_err(|e| format!("--config: {e}"))?;
    let cfg = medseg_model::nn::net::NetConfig::from_json(Some(model), &c)?;
    let ctx = gpu()?;
    let net = medseg_model::train::trainer::init_network(&cfg, 0, &ctx.autodiff_device())?;
    Ok(medseg_model::train::trainer::step_fits(&net, size, batch))
}

/// Runs a job with a terminal reporter, its error as text.
fn on_terminal<T>(job: impl FnOnce(&TerminalReporter) -> Result<T, JobError>) -> Result<T, String> {
    let r = TerminalReporter::new();
    let out = job(&r);
    r.finish();
    out.map_err(|e| e.to_string())
}

struct PredictArgs {
    model: Option<String>,
    weights: Option<PathBuf>,
    input: Vec<PathBuf>,
    out: PathBuf,
    threshold: f32,
    overwrite: bool,
    json: Option<PathBuf>,
}

fn predict(a: PredictArgs) -> Result<bool, String> {
    let which = match (&a.model, &a.weights) {
        (Some(m), None) => {
            if !jobs::models::BUNDLED.iter().any(|b| b.id == m) {
                let known: Vec<&str> = jobs::models::BUNDLED.iter().map(|b| b.id).collect();
                return Err(format!(
                    "no bundled model called {m:?}; bundled: {}; or pass --weights FILE",
                    known.join(", ")
                ));
            }
            ModelRef::parse(m)
        }
        (None, Some(w)) => ModelRef::File(w.clone()),
        _ => return Err("give either --model NAME (bundled) or --weights FILE".into()),
    };
    let t0 = std::time::Instant::now();
    let ctx = gpu()?;
    let gpu_s = t0.elapsed().as_secs_f64();
    let opts = jobs::predict::PredictOptions {
        inputs: a.input,
        out: a.out,
        threshold: a.threshold,
        overwrite: a.overwrite,
    };
    let mut load_s = 0.0;
    let report = on_terminal(|r| {
        let mut model = jobs::segment::load_model(&which, &ctx.device, r)?;
        load_s = t0.elapsed().as_secs_f64() - gpu_s;
        eprintln!("model: {} on {}", model.title, ctx.adapter.name);
        jobs::predict::predict(&mut model, &opts, r, &mut |i, n, path| {
            r.set_prefix(&format!("[{}/{n}] {}", i + 1, path.display()))
        })
    })?;
    print!("{}", report.to_text());
    if let Some(first) = report.files.first() {
        // Includes reading the first file, compiling (or loading from the kernel cache) and
        // tuning every kernel the network runs, and writing its mask.
        println!(
            "first mask {:.2} s after start (GPU {gpu_s:.2} s, model {load_s:.2} s, first file {:.2} s; kernel cache {})",
            gpu_s + load_s + first.seconds,
            first.seconds,
            medseg_model::gpu::kernel_cache_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "off".into())
        );
    }
    write_json(a.json.as_ref(), &report)?;
    Ok(report.failed == 0)
}

/// Times of `medseg bench first-mask`, seconds from the command's start.
#[derive(serde::Serialize)]
struct FirstMask {
    adapter: String,
    model: String,
    kernel_cache: Option<PathBuf>,
    gpu_s: f64,
    model_s: f64,
    first_mask_s: f64,
    second_mask_s: f64,
    foreground_pixels: usize,
}

fn bench_first_mask(weights: Option<&Path>, json: Option<&PathBuf>) -> Result<(), String> {
    use medseg_data::preprocess::InputSpec;
    use medseg_model::segment::SegModel;
    let t0 = std::time::Instant::now();
    let since = |t: std::time::Instant| t.duration_since(t0).as_secs_f64();
    let ctx = gpu()?;
    let gpu_s = since(std::time::Instant::now());
    let mut model = match weights {
        Some(w) => SegModel::open(w, &ctx.device).map_err(|e| e.to_string())?,
        None => {
            let cfg =
                medseg_model::nn::net::NetConfig::by_name("sa-umamba", 256)?.with_width(32)?;
            let net = medseg_model::train::trainer::init_network(&cfg, 42, &ctx.device)?;
            let input = InputSpec::reference(256, InputSpec::default_classes(1));
            SegModel::new(
                net,
                input,
                "compact SA-UMamba (width 32, initialised)".into(),
            )?
        }
    };
    let model_s = since(std::time::Instant::now());
    let (image, _) = medseg::gui::sample::SAMPLES[2]
        .load()
        .map_err(|e| e.to_string())?;
    let first = model
        .segment(&image, &mut |_, _| true)
        .map_err(|e| e.to_string())?;
    let first_mask_s = since(std::time::Instant::now());
    model
        .segment(&image, &mut |_, _| true)
        .map_err(|e| e.to_string())?;
    let second_mask_s = since(std::time::Instant::now());
    let r = FirstMask {
        adapter: format!("{} ({})", ctx.adapter.name, ctx.adapter.backend),
        model: model.title.clone(),
        kernel_cache: medseg_model::gpu::kernel_cache_dir(),
        gpu_s,
        model_s,
        first_mask_s,
        second_mask_s,
        foreground_pixels: first.counts(0.5).iter().skip(1).sum(),
    };
    println!(
        "{} on {}: GPU {:.2} s, model {:.2} s, first mask at {:.2} s, second at {:.2} s (+{:.3} s); kernel cache {}",
        r.model,
        r.adapter,
        r.gpu_s,
        r.model_s,
        r.first_mask_s,
        r.second_mask_s,
        r.second_mask_s - r.first_mask_s,
        r.kernel_cache
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "off".into())
    );
    write_json(json, &r)
}

/// Writes a checkpoint as a compact bundled model: f16 weights and a JSON with its title.
fn pack_model(checkpoint: &Path, out: &Path, title: &str) -> Result<(), String> {
    use medseg_model::train::checkpoint;
    let meta = checkpoint::read_meta(checkpoint)?;
    let weights = checkpoint.with_file_name(
        meta["weights"]
            .as_str()
            .ok_or("the checkpoint names no weights file")?,
    );
    let tensors = checkpoint::read_tensors(&weights)?;
    let name = out
        .file_name()
        .ok_or("--out must name a file stem, e.g. assets/models/polyp")?
        .to_string_lossy()
        .to_string();
    let mut card = meta.clone();
    card["title"] = title.into();
    card["weights"] = format!("{name}.safetensors").into();
    card["format"] = "medseg checkpoint 1".into();
    card["weights_dtype"] = "f16".into();
    card["source_checkpoint"] = checkpoint.display().to_string().into();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    checkpoint::write_tensors(&out.with_extension("safetensors"), &tensors, true)?;
    let body = serde_json::to_vec_pretty(&card).map_err(|e| e.to_string())?;
    medseg_data::atomic::write_atomic(&out.with_extension("json"), true, |w| w.write_all(&body))
        .map_err(|e| e.to_string())?;
    println!("wrote {0}.json and {0}.safetensors", out.display());
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
    // A reader that stops early (`medseg info … | head`) ends the output quietly, as other
    // command-line tools do, instead of a panic on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `medseg --train ...` is `medseg train ...`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--train") {
        args[1] = "train".into();
    }
    let cli = Cli::parse_from(args);
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
        Command::Train(job) => on_terminal(|r| {
            jobs::train::check(job)?;
            jobs::terminal::catch_interrupts();
            let ctx = GpuContext::create()?;
            jobs::train::train(job, &ctx, r)
        })
        .map(|_| true),
        Command::Predict {
            model,
            weights,
            input,
            out,
            threshold,
            overwrite,
            json,
        } => predict(PredictArgs {
            model: model.clone(),
            weights: weights.clone(),
            input: input.clone(),
            out: out.clone(),
            threshold: *threshold,
            overwrite: *overwrite,
            json: json.clone(),
        }),
        Command::PackModel {
            checkpoint,
            out,
            title,
        } => pack_model(checkpoint, out, title).map(|_| true),
        Command::GpuInfo => gpu_info().map(|_| true),
        Command::ServeWeb { dir, port } => serve_web(dir, *port).map(|_| true),
        Command::Models => {
            if jobs::models::BUNDLED.is_empty() {
                println!("no model is bundled with this build; use --weights FILE");
            }
            for m in jobs::models::BUNDLED {
                println!("{:<24} {}", m.id, m.title);
            }
            Ok(true)
        }
        Command::CheckFixtures { dir } => check_fixtures(dir),
        Command::Info { path, json } => info(path, *json).map(|_| true),
        Command::Eval {
            pred,
            gt,
            json,
            instances: true,
            iou,
            ..
        } => eval_instances(pred, gt, *iou, json.as_ref()).map(|_| true),
        Command::Eval {
            pred,
            gt,
            nsd_tolerance_mm,
            spacing_mm,
            json,
            masks,
            instances: false,
            ..
        } => eval(
            pred,
            gt,
            *nsd_tolerance_mm,
            *spacing_mm,
            masks,
            json.as_ref(),
        )
        .map(|_| true),
        Command::Bench {
            what: BenchCommand::FirstMask { weights, json },
        } => bench_first_mask(weights.as_deref(), json.as_ref()).map(|_| true),
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
        Command::Bench {
            what:
                BenchCommand::Conv {
                    batch,
                    iters,
                    no_burn,
                    json,
                },
        } => bench_conv(*batch, *iters, !*no_burn, json.as_ref()).map(|_| true),
        Command::ProbeStep {
            model,
            config,
            size,
            batch,
        } => probe_step(model, config, *size, *batch),
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

fn serve_web(dir: &Path, port: u16) -> Result<(), String> {
    for needed in ["index.html", "medseg_web.js", "medseg_web_bg.wasm"] {
        if !dir.join(needed).is_file() {
            return Err(format!(
                "{} has no {needed}: build the browser app first (bash scripts/build-web.sh {})",
                dir.display(),
                dir.display()
            ));
        }
    }
    let (listener, port) =
        medseg::serve::bind(port).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!(
        "Serving {} on http://127.0.0.1:{port}/ (a browser with WebGPU; Ctrl+C stops)",
        dir.display()
    );
    let log = std::sync::Arc::new(|s: medseg::serve::Seen| {
        eprintln!("{} {} {}", s.status, s.method, s.path)
    });
    medseg::serve::serve_forever(listener, dir.to_path_buf(), None, log);
    Ok(())
}
