//! The Segment panel and its actions: pick a model (bundled, or a checkpoint / official weights
//! opened from a file), run it on the open image on a worker (progress, Cancel), then review the
//! proposal — threshold slider, heat map, sizes per class — and Accept (one undo step) or
//! Reject it.

use crate::gui::app::{FileDialog, MedsegApp};
use crate::gui::tasks::{Outcome, Progress};
use crate::jobs;
use crate::jobs::segment::ModelRef;
use crate::jobs::JobError;
use medseg_data::proposal::Proposal;
use medseg_model::segment::SegModel;
use std::path::PathBuf;

/// The Segment shortcut (no modifier, like the tool keys B and E).
pub const SEGMENT_KEY: egui::Key = egui::Key::S;

impl MedsegApp {
    /// The model Segment runs now, if any.
    pub fn current_model(&self) -> Option<&ModelRef> {
        self.models.get(self.model_index)
    }

    /// Chooses the bundled model `id` (or fails when there is none of that name).
    pub fn choose_model(&mut self, id: &str) -> bool {
        match self
            .models
            .iter()
            .position(|m| matches!(m, ModelRef::Bundled(b) if *b == id))
        {
            Some(i) => {
                self.model_index = i;
                true
            }
            None => false,
        }
    }

    /// Adds a model file (medseg checkpoint or official weights) to the list and selects it;
    /// it is loaded on a worker now, so a file that is no model is reported at once.
    pub fn open_model(&mut self, path: PathBuf) {
        let m = ModelRef::File(path);
        let i = match self.models.iter().position(|x| *x == m) {
            Some(i) => i,
            None => {
                self.models.push(m.clone());
                self.models.len() - 1
            }
        };
        self.model_index = i;
        self.with_model(
            format!("Loading model {}", m.label()),
            m,
            async |model: &mut SegModel, _: &Progress| Ok(Outcome::ModelReady(model.title.clone())),
        );
    }

    /// Runs the current model on the open image (a worker task with progress and Cancel).
    pub fn segment(&mut self) {
        let Some(doc) = self.doc.as_ref() else {
            self.report_error("Open an image first; Segment runs a model on it.");
            return;
        };
        if !self.tasks.is_idle() {
            self.status = (
                "Wait for the running task (or cancel it) first.".into(),
                true,
            );
            return;
        }
        let Some(model) = self.current_model().cloned() else {
            self.report_error("No model: open one with Segment > Open model….");
            return;
        };
        let image = doc.image.clone();
        let serial = self.doc_serial;
        self.with_model(
            format!("Segmenting with {}", model.label()),
            model,
            async move |m: &mut SegModel, p: &Progress| {
                let proposal = jobs::segment::segment_async(m, &image, p).await?;
                Ok(Outcome::Proposal(
                    Box::new(proposal),
                    m.title.clone(),
                    serial,
                ))
            },
        );
    }

    /// Runs `work` on a worker with the model `m` (loaded onto the app's GPU device unless it is
    /// the one kept from the last run). The model cache stays locked while the work awaits: that
    /// is what makes a Segment wait for the launch warm-up (its own thread) instead of loading a
    /// second copy; on the desktop the future runs on its worker thread under `block_on`, and in
    /// the browser tasks that use a model never overlap (Segment refuses while one runs).
    #[allow(clippy::await_holding_lock)]
    fn with_model(
        &mut self,
        title: String,
        m: ModelRef,
        work: impl AsyncFnOnce(&mut SegModel, &Progress) -> Result<Outcome, JobError> + Send + 'static,
    ) {
        let device = match self.compute() {
            Ok(c) => c.device.clone(),
            Err(e) => {
                self.report_error(format!("Cannot run networks on this GPU: {e}"));
                return;
            }
        };
        let cache = self.model_cache();
        self.tasks.spawn_async(title, async move |p: &Progress| {
            // In the browser the kernel check cannot wait inside `compute`; it runs here, once.
            #[cfg(target_arch = "wasm32")]
            {
                use std::sync::atomic::{AtomicBool, Ordering};
                static CHECKED: AtomicBool = AtomicBool::new(false);
                if !CHECKED.load(Ordering::Relaxed) {
                    medseg_model::gpu::kernel_self_test_async(&device)
                        .await
                        .map_err(|e| {
                            JobError::Failed(format!("our kernels do not run on this GPU: {e}"))
                        })?;
                    CHECKED.store(true, Ordering::Relaxed);
                }
            }
            let mut cache = cache
                .lock()
                .map_err(|_| JobError::Failed("the model cache is unusable".into()))?;
            let model = cache.get(&m, &device, p)?;
            work(model, p).await
        });
    }

    /// A finished Segment: shown for review when its image is still the open one.
    pub(crate) fn proposal_arrived(&mut self, proposal: Proposal, model: &str, serial: u64) {
        if serial != self.doc_serial {
            self.status = (
                "The segmentation finished after its image was closed; dropped.".into(),
                false,
            );
            return;
        }
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        #[cfg(target_arch = "wasm32")]
        if crate::gui::page::reports_wanted() {
            crate::gui::page::report_mask(&proposal.labels(0.5));
        }
        match doc.propose(proposal, model) {
            Ok(()) => {
                let sizes = doc.proposal_sizes();
                let found: Vec<String> = sizes
                    .iter()
                    .map(|(n, v, _)| format!("{n}: {v} voxels"))
                    .collect();
                self.status = (
                    format!(
                        "Proposal from {model} ({}): review it, then Accept or Reject",
                        found.join(", ")
                    ),
                    false,
                );
            }
            Err(e) => self.report_error(e.to_string()),
        }
    }

    /// Merges the proposal into the labels (one undo step).
    pub fn accept_proposal(&mut self) {
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        if let Some(n) = doc.accept_proposal() {
            if let Some(l) = doc.present_labels().last() {
                self.active_label = *l;
            }
            self.status = (
                format!("Accepted the proposal ({n} voxels changed; Ctrl+Z takes it back)"),
                false,
            );
        }
    }

    pub fn reject_proposal(&mut self) {
        if let Some(doc) = self.doc.as_mut() {
            doc.reject_proposal();
            self.status = ("Proposal rejected; the labels are unchanged".into(), false);
        }
    }

    /// The Segment section of the side panel.
    pub(crate) fn segment_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Segment");
        let names: Vec<String> = self.models.iter().map(|m| m.label()).collect();
        if names.is_empty() {
            ui.label("No model yet: Segment > Open model….");
        } else {
            let mut index = self.model_index.min(names.len() - 1);
            egui::ComboBox::from_id_salt("model")
                .width(ui.available_width() - 8.0)
                .selected_text(names[index].clone())
                .show_ui(ui, |ui| {
                    for (i, n) in names.iter().enumerate() {
                        ui.selectable_value(&mut index, i, n);
                    }
                });
            self.model_index = index;
        }
        ui.horizontal(|ui| {
            let can = self.doc.is_some() && self.tasks.is_idle() && !names.is_empty();
            if ui
                .add_enabled(can, egui::Button::new("Segment"))
                .on_hover_text("Run the model on the open image (S)")
                .clicked()
            {
                self.segment();
            }
            if ui.button("Open model…").clicked() {
                self.pick_model();
            }
        });
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        let Some(review) = doc.proposal.as_mut() else {
            return;
        };
        ui.label(format!("Proposal from {}", review.model));
        let mut t = review.threshold;
        let mut heat = review.heat_map;
        ui.add(egui::Slider::new(&mut t, 0.0..=1.0).text("threshold"));
        ui.checkbox(&mut heat, "Probability heat map");
        if heat != review.heat_map {
            review.heat_map = heat;
            doc.proposal_revision += 1;
        }
        if t != review.threshold {
            doc.set_threshold(t);
        }
        let unit = if doc.is_2d() { "mm²" } else { "ml" };
        egui::Grid::new("proposal sizes")
            .striped(true)
            .show(ui, |ui| {
                for (name, voxels, size) in doc.proposal_sizes() {
                    ui.label(name);
                    ui.label(format!("{voxels} vox"));
                    ui.label(format!("{size:.2} {unit}"));
                    ui.end_row();
                }
            });
        ui.horizontal(|ui| {
            if ui.button("Accept").clicked() {
                self.accept_proposal();
            }
            if ui.button("Reject").clicked() {
                self.reject_proposal();
            }
        });
    }

    /// Asks for a model file on a dialog thread.
    pub(crate) fn pick_model(&self) {
        let d = FileDialog::new()
            .add_filter(
                "Models (medseg .json, official .pth/.pt/.safetensors)",
                &["json", "pth", "pt", "safetensors"],
            )
            .add_filter("All files", &["*"]);
        self.pick_model_file(d);
    }

    /// The Segment menu.
    pub(crate) fn segment_menu(&mut self, ui: &mut egui::Ui) {
        ui.menu_button("Segment", |ui| {
            let can = self.doc.is_some() && self.tasks.is_idle() && !self.models.is_empty();
            if ui
                .add_enabled(can, egui::Button::new("Segment").shortcut_text("S"))
                .clicked()
            {
                self.segment();
                ui.close();
            }
            ui.separator();
            let labels: Vec<String> = self.models.iter().map(|m| m.label()).collect();
            for (i, l) in labels.iter().enumerate() {
                if ui.radio(self.model_index == i, l).clicked() {
                    self.model_index = i;
                }
            }
            ui.separator();
            if ui.button("Open model…").clicked() {
                self.pick_model();
                ui.close();
            }
            let has = self.doc.as_ref().is_some_and(|d| d.proposal.is_some());
            if ui
                .add_enabled(has, egui::Button::new("Accept proposal"))
                .clicked()
            {
                self.accept_proposal();
                ui.close();
            }
            if ui
                .add_enabled(has, egui::Button::new("Reject proposal"))
                .clicked()
            {
                self.reject_proposal();
                ui.close();
            }
        });
    }
}
