//! The training tab's state: the form (what `medseg train` takes as flags), what a look at the
//! chosen dataset found, and the run — the same training job as the command line, on a thread
//! of its own so the viewer and Segment stay usable, with Pause, Resume and Stop (which saves)
//! and the live numbers the curves are drawn from.

use crate::jobs::train::TrainJob;
use crate::jobs::{JobError, Reporter};
use medseg_data::dataset::{Dataset, Survey};
use medseg_data::preprocess::Sample;
use medseg_model::gpu::GpuContext;
use medseg_model::train::trainer::{EpochReport, Event, TrainSummary};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The networks the tab offers: (name for `--model`, label).
pub const MODELS: [(&str, &str); 4] = [
    ("sa-umamba", "SA-UMamba (as released)"),
    ("sa-umamba-paper", "SA-UMamba (paper: RSSS decoder too)"),
    ("vm-unet", "VM-UNet"),
    ("usema", "USEMA"),
];

/// How the run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Scratch,
    /// From a checkpoint or official weights (`--init`).
    Weights,
    /// Continue the run saved in the output folder (`--resume`).
    Resume,
}

/// The form's fields, as text where the user types.
#[derive(Clone, Debug)]
pub struct TrainForm {
    pub data: String,
    pub out: String,
    pub model: usize,
    /// VM-UNet / SA-UMamba base width (96 = the paper's; 32 = the compact bundled size).
    pub width: usize,
    pub size: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Validation share when there is no split file.
    pub val_fraction: f64,
    pub split: String,
    pub start: Start,
    pub init: String,
    pub class_names: String,
    /// The masks are instance label maps (`--instances`).
    pub instances: bool,
}

impl Default for TrainForm {
    fn default() -> Self {
        TrainForm {
            data: String::new(),
            out: String::new(),
            model: 0,
            width: 96,
            size: 256,
            epochs: 39,
            batch: 16,
            lr: 1e-3,
            val_fraction: 0.2,
            split: String::new(),
            start: Start::Scratch,
            init: String::new(),
            class_names: String::new(),
            instances: false,
        }
    }
}

impl TrainForm {
    /// The job the form describes (the same struct `medseg train` parses its flags into).
    pub fn job(&self) -> Result<TrainJob, String> {
        let path = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let data = path(&self.data).ok_or("choose a dataset folder")?;
        let out = path(&self.out).ok_or("choose an output folder for the checkpoints")?;
        let model = MODELS[self.model.min(MODELS.len() - 1)].0;
        let init = match self.start {
            Start::Weights => Some(path(&self.init).ok_or("choose the weights to start from")?),
            _ => None,
        };
        Ok(TrainJob {
            model: model.into(),
            window: 16,
            no_mean_term: false,
            width: (model != "usema" && self.width != 96).then_some(self.width),
            class_names: if self.instances {
                Vec::new()
            } else {
                self.class_names
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            },
            data,
            instances: self.instances,
            out,
            epochs: self.epochs,
            batch: self.batch,
            size: self.size,
            seed: 42,
            lr: self.lr,
            val_fraction: self.val_fraction,
            split: path(&self.split),
            limit_train: None,
            limit_val: None,
            resume: self.start == Start::Resume,
            stop_after_minutes: None,
            init,
            json: None,
            masks: Default::default(),
            normalization: "auto".into(),
            previews: PREVIEWS,
        })
    }
}

/// What the tab found in a dataset folder.
#[derive(Clone, Debug)]
pub struct DatasetLook {
    pub root: PathBuf,
    pub result: Result<(Dataset, Survey), String>,
}

/// Scans a dataset folder and loads a sample of its pairs (on a worker); `instances`: the
/// masks are instance label maps, looked for in labels/ first.
pub fn look_at(
    root: &Path,
    instances: bool,
    keep_going: &mut dyn FnMut(usize, usize) -> bool,
) -> DatasetLook {
    let (scanned, masks) = if instances {
        let masks = medseg_data::MaskOptions {
            max_labels: u16::MAX as usize,
            ..Default::default()
        };
        (Dataset::scan_with(root, &["labels", "masks"]), masks)
    } else {
        (Dataset::scan(root), Default::default())
    };
    let result = scanned.map_err(|e| e.to_string()).map(|d| {
        let s = d.survey(32, &masks, keep_going);
        (d, s)
    });
    DatasetLook {
        root: root.to_path_buf(),
        result,
    }
}

/// What the curves and read-outs show, updated by the training thread.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// (epoch + fraction of it, loss) for every step.
    pub steps: Vec<(f64, f64)>,
    pub epochs: Vec<EpochReport>,
    pub stage: String,
    pub fraction: Option<f32>,
    pub log: Vec<String>,
    /// Steps per epoch and epochs, once known.
    pub steps_per_epoch: usize,
    pub total_epochs: usize,
    /// Images per second over the last epoch.
    pub images_per_s: Option<f64>,
    /// GPU memory the training holds (the allocator's pool), GiB, read after each epoch.
    pub pool_gib: Option<f64>,
    /// Steps of the whole run done (earlier sessions of a resumed run included).
    pub steps_done: usize,
    /// `best.json` of the output folder once one exists.
    pub best: Option<PathBuf>,
    /// When the run ended: its summary or the error.
    pub finished: Option<Result<TrainSummary, String>>,
    /// The first validation images with the latest epoch's prediction over them.
    pub previews: Option<Previews>,
}

/// Validation images as the tab shows them after an epoch: RGBA, the prediction (foreground
/// probability ≥ 0.5) tinted red, the reference mask's outline green.
#[derive(Clone, Debug)]
pub struct Previews {
    pub epoch: usize,
    pub side: usize,
    pub rgba: Vec<Vec<u8>>,
    /// DSC of each image's prediction.
    pub dsc: Vec<f64>,
}

/// How many validation images the tab shows.
pub const PREVIEWS: usize = 4;

impl Previews {
    pub fn compose(epoch: usize, samples: &[Sample], predicted: &[Vec<f32>]) -> Self {
        let side = samples.first().map_or(0, |s| s.width);
        let mut rgba = Vec::new();
        let mut dsc = Vec::new();
        for (s, p) in samples.iter().zip(predicted) {
            let (w, h) = (s.width, s.height);
            let fg = |m: &[f32], x: usize, y: usize| m[y * w + x] >= 0.5;
            let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
            let mut out = Vec::with_capacity(w * h * 4);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    // Samples are normalised to [0, 255], channels interleaved.
                    let c = s.channels;
                    let px: [f32; 3] = if c >= 3 {
                        [s.image[i * c], s.image[i * c + 1], s.image[i * c + 2]]
                    } else {
                        [s.image[i * c]; 3]
                    };
                    let (pred, truth) = (p[i] >= 0.5, fg(&s.mask, x, y));
                    tp += (pred && truth) as u64;
                    fp += (pred && !truth) as u64;
                    fn_ += (!pred && truth) as u64;
                    let edge = truth
                        && [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)]
                            .iter()
                            .any(|(dx, dy)| {
                                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                                nx < 0
                                    || ny < 0
                                    || nx >= w as i64
                                    || ny >= h as i64
                                    || !fg(&s.mask, nx as usize, ny as usize)
                            });
                    let mut rgb = px.map(|v| v.clamp(0.0, 255.0));
                    if pred {
                        rgb = [
                            rgb[0] * 0.55 + 255.0 * 0.45,
                            rgb[1] * 0.55 + 40.0 * 0.45,
                            rgb[2] * 0.55 + 40.0 * 0.45,
                        ];
                    }
                    if edge {
                        rgb = [60.0, 230.0, 90.0];
                    }
                    out.extend(rgb.map(|v| v.round() as u8));
                    out.push(255);
                }
            }
            let d = 2 * tp + fp + fn_;
            dsc.push(if d == 0 {
                1.0
            } else {
                2.0 * tp as f64 / d as f64
            });
            rgba.push(out);
        }
        Previews {
            epoch,
            side,
            rgba,
            dsc,
        }
    }
}

impl Live {
    /// Seconds left, from the mean time per step this process has run (`self.steps`).
    pub fn eta(&self, elapsed: f64) -> Option<f64> {
        let total = self.steps_per_epoch * self.total_epochs;
        let here = self.steps.len();
        (here > 2 && total > self.steps_done)
            .then(|| elapsed / here as f64 * (total - self.steps_done) as f64)
    }
}

/// A training run in progress (or just ended).
pub struct TrainingRun {
    pub job: TrainJob,
    pub live: Arc<Mutex<Live>>,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    pub started: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

struct RunReporter {
    live: Arc<Mutex<Live>>,
    stop: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Reporter for RunReporter {
    fn progress(&self, stage: &str, fraction: Option<f32>) -> bool {
        if let Ok(mut l) = self.live.lock() {
            l.stage = stage.to_string();
            l.fraction = fraction;
        }
        (self.wake)();
        !self.cancelled()
    }

    fn log(&self, line: &str) {
        if let Ok(mut l) = self.live.lock() {
            l.log.push(line.to_string());
        }
        (self.wake)();
    }

    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl TrainingRun {
    /// Starts `job` on `ctx` (the app's device, shared with the viewer) on a new thread.
    pub fn start(
        job: TrainJob,
        ctx: GpuContext,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Self> {
        let best = job.out.join("best.json");
        let live = Arc::new(Mutex::new(Live {
            total_epochs: job.epochs,
            best: best.exists().then(|| best.clone()),
            ..Live::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let handle = {
            let (job, live, stop, pause) = (job.clone(), live.clone(), stop.clone(), pause.clone());
            std::thread::Builder::new()
                .name("training".into())
                .spawn(move || {
                    let r = RunReporter {
                        live: live.clone(),
                        stop: stop.clone(),
                        wake: wake.clone(),
                    };
                    let mut observe = |e: &Event| {
                        match e {
                            Event::Step {
                                epoch,
                                step,
                                steps,
                                loss,
                            } => {
                                if let Ok(mut l) = live.lock() {
                                    l.steps_per_epoch = *steps;
                                    l.steps_done = (*epoch - 1) * *steps + *step;
                                    let x = (*epoch - 1) as f64 + *step as f64 / *steps as f64;
                                    l.steps.push((x, *loss));
                                }
                            }
                            Event::Previews {
                                epoch,
                                samples,
                                predicted,
                            } => {
                                let p = Previews::compose(*epoch, samples, predicted);
                                if let Ok(mut l) = live.lock() {
                                    l.previews = Some(p);
                                }
                            }
                            Event::Epoch(e) => {
                                let pool = pool_gib(&ctx);
                                if let Ok(mut l) = live.lock() {
                                    l.images_per_s = Some(e.train_images_per_s);
                                    l.epochs.push((*e).clone());
                                    l.pool_gib = pool;
                                    if l.best.is_none() && best.exists() {
                                        l.best = Some(best.clone());
                                    }
                                }
                            }
                        }
                        // Paused: hold the training thread between steps until resumed or
                        // stopped (a stop then saves where the run stands).
                        while pause.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        wake();
                    };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::jobs::train::train_observed(&job, &ctx, &r, &mut observe)
                    }));
                    let result = match result {
                        Ok(Ok(s)) => Ok(s),
                        Ok(Err(JobError::Cancelled)) => Err("stopped".to_string()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(p) => Err(format!(
                            "training stopped on an internal error: {}",
                            medseg_model::gpu::panic_message(p.as_ref())
                        )),
                    };
                    if let Ok(mut l) = live.lock() {
                        l.finished = Some(result);
                    }
                    wake();
                })?
        };
        Ok(TrainingRun {
            job,
            live,
            stop,
            pause,
            started: Instant::now(),
            handle: Some(handle),
        })
    }

    pub fn is_running(&self) -> bool {
        self.live
            .lock()
            .map(|l| l.finished.is_none())
            .unwrap_or(false)
    }

    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::Relaxed);
    }

    /// Asks the run to stop after the current step; it saves where it stands.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits for the training thread (after [`stop`](Self::stop), when the window closes).
    pub fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// GPU memory held by the allocator's pool, GiB.
fn pool_gib(ctx: &GpuContext) -> Option<f64> {
    ctx.device
        .memory_pool_usage()
        .map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64)
}
