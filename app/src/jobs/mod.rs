//! The jobs the app and the command line both run — open, segment, predict (a batch of files),
//! export, train — with one way of reporting: a [`Reporter`] takes progress (stage and
//! fraction) and log lines and says whether to go on; every job ends in a typed result or a
//! [`JobError`]. The GUI runs jobs on its worker threads (`gui::tasks`), the CLI in the
//! foreground with a terminal progress bar ([`terminal::TerminalReporter`]).

#[cfg(target_arch = "wasm32")]
pub mod browser_files;
pub mod export;
pub mod models;
pub mod open;
pub mod predict;
pub mod segment;
pub mod terminal;
pub mod train;

use medseg_data::DataError;
use medseg_model::error::GpuError;
use medseg_model::segment::SegmentError;

/// How mask files become labels, for `medseg train` and `medseg eval` alike.
#[derive(Clone, Debug, clap::Args)]
pub struct MaskArgs {
    /// Binarise masks: foreground where a value passes this fraction of full scale (e.g. 0.5
    /// for masks stored as JPEG, whose compression noise is not labels).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Refuse a mask with more distinct foreground values than this (an image passed as a
    /// mask by mistake).
    #[arg(long, default_value_t = 255)]
    pub max_labels: usize,
}

impl Default for MaskArgs {
    fn default() -> Self {
        let o = medseg_data::MaskOptions::default();
        MaskArgs {
            threshold: o.threshold,
            max_labels: o.max_labels,
        }
    }
}

impl MaskArgs {
    pub fn options(&self) -> medseg_data::MaskOptions {
        medseg_data::MaskOptions {
            threshold: self.threshold,
            max_labels: self.max_labels,
        }
    }
}

/// Where a job reports to.
pub trait Reporter {
    /// Progress of the current stage ("loading model", "segmenting", ...), `fraction` in [0, 1]
    /// when known. Returns false when the user asked to stop.
    fn progress(&self, stage: &str, fraction: Option<f32>) -> bool;
    /// A line for the log (a skipped file, an epoch's numbers).
    fn log(&self, line: &str);
    /// Whether the user asked to stop.
    fn cancelled(&self) -> bool;
}

/// A reporter that shows nothing and never cancels (tests, nested work).
pub struct Silent;

impl Reporter for Silent {
    fn progress(&self, _: &str, _: Option<f32>) -> bool {
        true
    }
    fn log(&self, _: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Data(DataError),
    #[error(transparent)]
    Segment(SegmentError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A checkpoint or training state that cannot be read or does not fit.
    #[error(transparent)]
    Checkpoint(#[from] medseg_model::train::checkpoint::CheckpointError),
    /// Wrong arguments or settings, named in the message.
    #[error("{0}")]
    Invalid(String),
    /// Anything else the lower layers report as text (training).
    #[error("{0}")]
    Failed(String),
}

impl From<DataError> for JobError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Cancelled => JobError::Cancelled,
            other => JobError::Data(other),
        }
    }
}

impl From<SegmentError> for JobError {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Cancelled => JobError::Cancelled,
            other => JobError::Segment(other),
        }
    }
}

/// A progress callback for the lower layers' `(done, total) -> keep going` form.
pub fn fraction_of<'a>(
    r: &'a dyn Reporter,
    stage: &'a str,
) -> impl FnMut(usize, usize) -> bool + 'a {
    move |done, total| r.progress(stage, Some(done as f32 / total.max(1) as f32))
}
