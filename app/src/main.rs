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
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Whole networks (paper configuration, 1 class, random weights): inference at batch 1 and
    /// 16, forward+backward at batch 8, against the official code's H100 figures.
    Model {
        /// Networks to time.
        #[arg(long, value_delimiter = ',', default_values_t = ["sa-umamba".to_string(), "vm-unet".to_string()])]
        models: Vec<String>,
        /// Input side in pixels (a multiple of 32).
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
    let report = fixtures::check_dir(dir, &ctx.device, |f| println!("{}", f.line()))?;
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
