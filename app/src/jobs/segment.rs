//! Segment: a model (bundled, or a checkpoint / official weights the user picked) on an image or
//! volume, giving a [`Proposal`] the user reviews before it enters the labels.

use super::models::BUNDLED;
use super::{fraction_of, JobError, Reporter};
use burn::tensor::Device;
use medseg_data::proposal::Proposal;
use medseg_data::volume::Volume;
use medseg_model::segment::SegModel;
use std::path::PathBuf;

/// Which model to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// One of [`BUNDLED`], by its id.
    Bundled(&'static str),
    /// A medseg checkpoint (`.json`) or official weights (`.pth`, `.pt`, `.safetensors`).
    File(PathBuf),
}

impl ModelRef {
    /// A bundled model by id, or a file.
    pub fn parse(name_or_path: &str) -> ModelRef {
        match BUNDLED.iter().find(|m| m.id == name_or_path) {
            Some(m) => ModelRef::Bundled(m.id),
            None => ModelRef::File(PathBuf::from(name_or_path)),
        }
    }

    /// How the user knows it.
    pub fn label(&self) -> String {
        match self {
            ModelRef::Bundled(id) => BUNDLED
                .iter()
                .find(|m| m.id == *id)
                .map(|m| m.title.to_string())
                .unwrap_or_else(|| id.to_string()),
            ModelRef::File(p) => p.display().to_string(),
        }
    }
}

/// Loads a model onto `device`.
pub fn load_model(m: &ModelRef, device: &Device, r: &dyn Reporter) -> Result<SegModel, JobError> {
    r.progress("loading the model", None);
    let model = match m {
        ModelRef::Bundled(id) => {
            let b = BUNDLED
                .iter()
                .find(|b| b.id == *id)
                .ok_or_else(|| JobError::Invalid(format!("no bundled model called {id:?}")))?;
            SegModel::from_bytes(b.id, b.json, b.weights, device)?
        }
        ModelRef::File(path) => SegModel::open(path, device)?,
    };
    if r.cancelled() {
        return Err(JobError::Cancelled);
    }
    Ok(model)
}

/// The last model loaded, kept so the next Segment with it starts at once.
#[derive(Default)]
pub struct ModelCache {
    entry: Option<(ModelRef, SegModel)>,
}

impl ModelCache {
    /// The model `m`, loaded now unless it is the one kept.
    pub fn get(
        &mut self,
        m: &ModelRef,
        device: &Device,
        r: &dyn Reporter,
    ) -> Result<&mut SegModel, JobError> {
        if self.entry.as_ref().is_none_or(|(k, _)| k != m) {
            self.entry = None;
            self.entry = Some((m.clone(), load_model(m, device, r)?));
        }
        Ok(&mut self.entry.as_mut().expect("just set").1)
    }
}

/// Runs `model` over `image` (slice by slice for volumes), with progress and cancel; waits for
/// the GPU (the browser awaits [`segment_async`]).
pub fn segment(
    model: &mut SegModel,
    image: &Volume,
    r: &dyn Reporter,
) -> Result<Proposal, JobError> {
    pollster::block_on(segment_async(model, image, r))
}

/// [`segment`] as a future.
pub async fn segment_async(
    model: &mut SegModel,
    image: &Volume,
    r: &dyn Reporter,
) -> Result<Proposal, JobError> {
    let depth = image.geometry.dims[2];
    let stage = if depth > 1 {
        "segmenting slices"
    } else {
        "segmenting"
    };
    let mut progress = fraction_of(r, stage);
    Ok(model.segment_async(image, &mut progress).await?)
}
