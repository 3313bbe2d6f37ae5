//! Predict: a model over many files or folders, each mask written beside the others in an
//! output folder (PNG for 2-D raster images, NIfTI with the source's header otherwise). A file
//! that fails is reported and the batch goes on.

use super::segment::segment;
use super::{JobError, Reporter};
use medseg_data::dataset::image_stem;
use medseg_data::volume::{Format, Volume};
use medseg_model::segment::SegModel;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Files and folders as given (see [`collect_inputs`]).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// Foreground probability at which a voxel is labelled.
    pub threshold: f32,
    /// Replace masks already in `out`.
    pub overwrite: bool,
}

/// What happened to one input.
#[derive(Clone, Debug, Serialize)]
pub struct PredictedFile {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub error: Option<String>,
    pub seconds: f64,
    /// Labelled voxels per class name (background left out).
    pub voxels: Vec<(String, usize)>,
    /// The same as a size in `unit`.
    pub sizes: Vec<(String, f64)>,
    /// "ml" for volumes, "mm²" for 2-D images (raster pixels count as 1 mm × 1 mm).
    pub unit: &'static str,
    /// An instance model's output: how many instances the written map holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PredictReport {
    pub model: String,
    pub threshold: f32,
    pub files: Vec<PredictedFile>,
    pub failed: usize,
}

fn is_raster(v: &Volume) -> bool {
    matches!(
        v.source.format,
        Format::Png | Format::Jpeg | Format::Bmp | Format::Tiff
    ) && v.geometry.dims[2] == 1
}

/// Whether `p` is a file of a DICOM series (by extension or its "DICM" mark).
fn is_dicom_file(p: &Path) -> bool {
    let lower = p.to_string_lossy().to_ascii_lowercase();
    if lower.ends_with(".dcm") {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// The inputs a list of paths stands for: files as they are; a folder holding only DICOM files
/// is one series; any other folder gives its image files (sorted) and its sub-folders (each a
/// DICOM series). Hidden files are skipped.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, JobError> {
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(JobError::Invalid(format!(
                "{}: no such file or folder",
                p.display()
            )));
        }
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let rd =
            std::fs::read_dir(p).map_err(|e| JobError::Invalid(format!("{}: {e}", p.display())))?;
        for e in rd.flatten() {
            let q = e.path();
            if q.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if q.is_dir() {
                dirs.push(q);
            } else {
                files.push(q);
            }
        }
        files.sort();
        dirs.sort();
        if !files.is_empty() && files.iter().all(|f| is_dicom_file(f)) {
            out.push(p.clone());
            continue;
        }
        out.extend(
            files
                .into_iter()
                .filter(|f| image_stem(f).is_some() && !is_dicom_file(f)),
        );
        out.extend(dirs);
    }
    if out.is_empty() {
        return Err(JobError::Invalid(
            "no image, volume or DICOM folder among the inputs".into(),
        ));
    }
    Ok(out)
}

/// Output file name of an input: its stem (a DICOM folder: the folder's name) with `.png` for
/// 2-D raster images, `.nii.gz` otherwise.
pub fn output_name(input: &Path, image: &Volume) -> String {
    let stem = if input.is_dir() {
        input.file_name().map(|n| n.to_string_lossy().to_string())
    } else {
        image_stem(input)
    }
    .unwrap_or_else(|| "mask".into());
    if is_raster(image) {
        format!("{stem}.png")
    } else {
        format!("{stem}.nii.gz")
    }
}

/// Segments every input with `model` and writes its mask to `opts.out`.
pub fn predict(
    model: &mut SegModel,
    opts: &PredictOptions,
    r: &dyn Reporter,
    on_file: &mut dyn FnMut(usize, usize, &Path),
) -> Result<PredictReport, JobError> {
    if !(0.0..=1.0).contains(&opts.threshold) {
        return Err(JobError::Invalid(format!(
            "the threshold must lie in [0, 1], is {}",
            opts.threshold
        )));
    }
    let inputs = collect_inputs(&opts.inputs)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| JobError::Invalid(format!("{}: {e}", opts.out.display())))?;
    let mut files = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (i, input) in inputs.iter().enumerate() {
        on_file(i, inputs.len(), input);
        let t0 = Instant::now();
        let mut entry = PredictedFile {
            input: input.clone(),
            output: None,
            error: None,
            seconds: 0.0,
            voxels: Vec::new(),
            sizes: Vec::new(),
            unit: "",
            instances: None,
        };
        let result = (|| -> Result<(), JobError> {
            let image = super::open::open_image(input, r)?;
            let name = output_name(input, &image);
            if !used.insert(name.clone()) {
                return Err(JobError::Invalid(format!(
                    "another input already wrote {name}; rename one of them"
                )));
            }
            if model.input.instances && image.geometry.dims[2] > 1 {
                return Err(JobError::Invalid(format!(
                    "{} gives instance maps of 2-D images; this is a volume",
                    model.title
                )));
            }
            let proposal = segment(model, &image, r)?;
            let labels = if model.input.instances {
                // Interior and boundary become instances, written with their ids.
                let (labels, n) = proposal.instances(opts.threshold)?;
                entry.instances = Some(n);
                labels
            } else {
                proposal.labels(opts.threshold)
            };
            let path = opts.out.join(&name);
            super::export::export_labels(&path, &labels, opts.overwrite, r)?;
            let counts = proposal.counts(opts.threshold);
            let sp = image.geometry.spacing_mm;
            let (unit, name) = if image.geometry.dims[2] > 1 {
                (sp[0] * sp[1] * sp[2] / 1000.0, "ml")
            } else {
                (sp[0] * sp[1], "mm²")
            };
            entry.unit = name;
            for (c, n) in counts.iter().enumerate().skip(1) {
                let class = proposal
                    .classes
                    .get(c)
                    .cloned()
                    .unwrap_or(format!("class {c}"));
                entry.voxels.push((class.clone(), *n));
                entry.sizes.push((class, *n as f64 * unit));
            }
            entry.output = Some(path);
            Ok(())
        })();
        entry.seconds = t0.elapsed().as_secs_f64();
        match result {
            Ok(()) => {}
            Err(JobError::Cancelled) => return Err(JobError::Cancelled),
            Err(e) => {
                r.log(&format!("failed: {}: {e}", input.display()));
                entry.error = Some(e.to_string());
            }
        }
        files.push(entry);
    }
    let failed = files.iter().filter(|f| f.error.is_some()).count();
    Ok(PredictReport {
        model: model.title.clone(),
        threshold: opts.threshold,
        files,
        failed,
    })
}

impl PredictReport {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for f in &self.files {
            match (&f.output, &f.error) {
                (Some(o), _) => {
                    let mut sizes: Vec<String> = f
                        .voxels
                        .iter()
                        .map(|(c, n)| format!("{c} {n} voxels"))
                        .collect();
                    if let Some(n) = f.instances {
                        sizes.insert(0, format!("{n} instances"));
                    }
                    s += &format!(
                        "{} -> {} ({}; {:.2} s)\n",
                        f.input.display(),
                        o.display(),
                        sizes.join(", "),
                        f.seconds
                    );
                }
                (None, Some(e)) => s += &format!("{}: FAILED: {e}\n", f.input.display()),
                (None, None) => {}
            }
        }
        s += &format!(
            "{} of {} written with {} at threshold {}\n",
            self.files.len() - self.failed,
            self.files.len(),
            self.model,
            self.threshold
        );
        s
    }
}
