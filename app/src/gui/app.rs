//! The app: state and actions (tasks, documents, opening, export, shortcuts, undo); the panels
//! that show them are in `ui/`, one file each.

use super::document::{Document, Plane, Stroke, ViewMapping};
use super::recent::Recent;
use super::render::{GpuDoc, SliceRenderer};
use super::sample::SAMPLES;
use super::tasks::{Outcome, TaskError, Tasks};
use crate::jobs;
use egui::{Color32, Key, Modifiers, Rect, Vec2};
use egui_wgpu::wgpu;
use medseg_data::volume::LabelMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Navigate,
    Brush,
    Eraser,
}

/// Zoom and pan of one plane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewState {
    pub(crate) zoom: f32,
    pub(crate) pan: Vec2,
    /// Wheel movement not yet turned into whole slices.
    pub(crate) scroll: f32,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            zoom: 1.0,
            pan: Vec2::ZERO,
            scroll: 0.0,
        }
    }
}

/// Where a plane was drawn in the last frame (for tests, screenshots and the read-out).
#[derive(Clone, Copy, Debug)]
pub struct DrawnView {
    pub widget: Rect,
    pub mapping: ViewMapping,
    /// Crosshair centre on screen (points), for volumes.
    pub cursor: Option<[f32; 2]>,
}

pub(crate) enum Dialog {
    Error(String),
    /// Export would replace this file.
    Replace(PathBuf),
    /// Unsaved edits and the user asked to close the window.
    UnsavedClose,
    /// Unsaved edits and the user asked to open another image.
    UnsavedOpen(Opening),
    /// A network is training and the user asked to close the window.
    TrainingClose,
}

/// Something to open once the user agreed.
#[derive(Clone, Debug)]
pub enum Opening {
    Image(PathBuf),
    Sample(usize),
}

/// What a file dialog (running on its own thread) picked.
pub(crate) enum Picked {
    Image(PathBuf),
    Model(PathBuf),
    Labels(PathBuf),
    Export(PathBuf),
    Screenshot(PathBuf),
    /// A path for a field of the training form.
    Train(super::ui::train_panel::TrainField, PathBuf),
    /// A dropped file that could not be read (browser).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Unreadable(String),
}

pub(crate) struct Gpu {
    pub(crate) instance: wgpu::Instance,
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) renderer: SliceRenderer,
    /// burn on this same device, started on first use.
    pub(crate) compute: Option<medseg_model::gpu::GpuContext>,
}

pub struct MedsegApp {
    pub(crate) gpu: Gpu,
    pub doc: Option<Document>,
    pub(crate) gpu_doc: Option<GpuDoc>,
    pub tasks: Tasks,
    pub tool: Tool,
    pub brush_radius_mm: f32,
    pub active_label: u16,
    pub(crate) views: HashMap<Plane, ViewState>,
    pub maximised: Option<Plane>,
    pub(crate) stroke: Option<(Plane, Stroke)>,
    /// The last status message and whether it is an error.
    pub status: (String, bool),
    pub(crate) recent: Recent,
    pub(crate) dialog: Option<Dialog>,
    pub(crate) hover: Option<(Plane, [usize; 3])>,
    pub drawn: HashMap<Plane, DrawnView>,
    /// Close the window once edits are saved or discarded.
    pub(crate) allow_close: bool,
    pub(crate) open_path_text: String,
    pub(crate) picked_tx: Sender<Picked>,
    pub(crate) picked_rx: Receiver<Picked>,
    pub(crate) shot_tx: Sender<Arc<egui::ColorImage>>,
    pub(crate) shot_rx: Receiver<Arc<egui::ColorImage>>,
    /// Where the next screenshot goes, and whether to quit after writing it.
    pub(crate) shot_target: Option<(PathBuf, bool)>,
    /// Labels to open once the image being loaded arrives.
    pub(crate) labels_after_open: Option<PathBuf>,
    /// Export generation (the document's edit count when the export started).
    pub(crate) export_generation: HashMap<u64, u64>,
    /// Models the Segment action can run: the bundled ones, then files the user opened.
    pub models: Vec<jobs::segment::ModelRef>,
    /// Index into `models` of the one Segment runs.
    pub model_index: usize,
    /// The last model loaded, kept (on the GPU) for the next Segment.
    pub(crate) model_cache: Arc<Mutex<jobs::segment::ModelCache>>,
    /// Counts documents opened, so a proposal for an image no longer open is dropped.
    pub doc_serial: u64,
    /// A bundled model to run as soon as the image being opened arrives.
    pub(crate) segment_after_open: Option<&'static str>,
    /// The training panel: shown, its form, what it found in the dataset, the run.
    pub training_open: bool,
    pub train_form: super::training::TrainForm,
    pub train_look: Option<super::training::DatasetLook>,
    pub training: Option<super::training::TrainingRun>,
    /// Textures of the training tab's validation previews, with the epoch they show.
    pub train_previews: Option<(usize, Vec<egui::TextureHandle>)>,
    /// The window closes once the training run has stopped and saved.
    pub(crate) close_after_training: bool,
    pub(crate) ctx: egui::Context,
    pub(crate) ctx_slot: ContextSlot,
}

/// The egui context workers wake; set on the first frame.
pub(crate) type ContextSlot = Arc<Mutex<Option<egui::Context>>>;

pub(crate) fn wake(slot: &ContextSlot) -> Arc<dyn Fn() + Send + Sync> {
    let slot = slot.clone();
    Arc::new(move || {
        if let Some(c) = slot.lock().ok().and_then(|c| c.clone()) {
            c.request_repaint();
        }
    })
}

impl MedsegApp {
    /// The app on egui's wgpu device (the same device the networks will use).
    pub fn new(render_state: &egui_wgpu::RenderState) -> Self {
        let slot: ContextSlot = Arc::new(Mutex::new(None));
        let renderer = SliceRenderer::new(&render_state.device, render_state.target_format);
        let (picked_tx, picked_rx) = channel();
        let (shot_tx, shot_rx) = channel();
        MedsegApp {
            gpu: Gpu {
                instance: render_state.instance.clone(),
                adapter: render_state.adapter.clone(),
                compute: None,
                device: render_state.device.clone(),
                queue: render_state.queue.clone(),
                renderer,
            },
            doc: None,
            gpu_doc: None,
            tasks: Tasks::new(wake(&slot)),
            tool: Tool::Navigate,
            brush_radius_mm: 5.0,
            active_label: 1,
            views: HashMap::new(),
            maximised: None,
            stroke: None,
            status: (String::new(), false),
            recent: Recent::load(),
            dialog: None,
            hover: None,
            drawn: HashMap::new(),
            allow_close: false,
            open_path_text: String::new(),
            picked_tx,
            picked_rx,
            shot_tx,
            shot_rx,
            shot_target: None,
            labels_after_open: None,
            export_generation: HashMap::new(),
            models: jobs::models::BUNDLED
                .iter()
                .map(|m| jobs::segment::ModelRef::Bundled(m.id))
                .collect(),
            model_index: 0,
            model_cache: Arc::default(),
            doc_serial: 0,
            segment_after_open: None,
            training_open: false,
            train_form: Default::default(),
            train_look: None,
            training: None,
            train_previews: None,
            close_after_training: false,
            ctx: egui::Context::default(),
            ctx_slot: slot,
        }
    }

    /// Binds the app to the window's egui context (done by the first frame at the latest).
    pub fn set_context(&mut self, ctx: &egui::Context) {
        self.ctx = ctx.clone();
        if let Ok(mut s) = self.ctx_slot.lock() {
            *s = Some(ctx.clone());
        }
    }

    /// burn (the networks' runtime) on the window's own wgpu device, started on first use and
    /// checked by running our scan kernel once; fails with the reason when the device lacks
    /// what the kernels need or the kernel gives a wrong answer.
    pub fn compute(&mut self) -> Result<&medseg_model::gpu::GpuContext, String> {
        if self.gpu.compute.is_none() {
            let ctx = medseg_model::gpu::GpuContext::from_wgpu(
                self.gpu.instance.clone(),
                self.gpu.adapter.clone(),
                self.gpu.device.clone(),
                self.gpu.queue.clone(),
            )
            .map_err(|e| e.to_string())?;
            // In the browser nothing may wait for the GPU here: the check runs at the start of
            // the first task that uses the device (`with_model`).
            #[cfg(not(target_arch = "wasm32"))]
            medseg_model::gpu::kernel_self_test(&ctx.device)?;
            self.gpu.compute = Some(ctx);
        }
        Ok(self.gpu.compute.as_ref().expect("just set"))
    }

    /// Compiles the networks' kernels in the background at launch, on a GPU: the first model
    /// of the list segments the bundled colonoscopy frame on a thread that holds the model
    /// cache, so the user's first Segment finds the model loaded and its kernels compiled (or
    /// waits only for the rest). The first use on a machine compiles for tens of seconds; from
    /// the kernel cache it takes about a second. Skipped on software adapters (it would keep
    /// the CPU busy for minutes) and with MEDSEG_WARM_UP=0; a failure here is left for Segment
    /// to report.
    pub fn warm_up(&mut self) {
        // In the browser there is no thread to warm up on; the first Segment compiles.
        if cfg!(target_arch = "wasm32") {
            return;
        }
        let software = self.gpu.adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        if software || std::env::var("MEDSEG_WARM_UP").is_ok_and(|v| v == "0") {
            return;
        }
        let Some(model) = self.models.first().cloned() else {
            return;
        };
        let device = match self.compute() {
            Ok(c) => c.device.clone(),
            Err(_) => return,
        };
        let cache = self.model_cache();
        let spawned = std::thread::Builder::new()
            .name("kernel warm-up".into())
            .spawn(move || {
                let Ok((image, _)) = crate::gui::sample::SAMPLES[2].load() else {
                    return;
                };
                let Ok(mut cache) = cache.lock() else {
                    return;
                };
                if let Ok(m) = cache.get(&model, &device, &jobs::Silent) {
                    let _ = m.segment(&image, &mut |_, _| true);
                }
            });
        if let Err(e) = spawned {
            self.status = (format!("Could not start the kernel warm-up: {e}"), false);
        }
    }

    /// No task running and no dialog open.
    pub fn is_idle(&self) -> bool {
        self.tasks.is_idle() && self.dialog.is_none()
    }

    /// The message of the error dialog, if one is open.
    pub fn error_message(&self) -> Option<&str> {
        match &self.dialog {
            Some(Dialog::Error(e)) => Some(e),
            _ => None,
        }
    }

    /// Does a dialog ask whether to replace a file?
    pub fn asks_to_replace(&self) -> Option<&Path> {
        match &self.dialog {
            Some(Dialog::Replace(p)) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn info(&mut self, text: impl Into<String>) {
        self.status = (text.into(), false);
    }

    /// Shows an error in the status bar and a dialog.
    pub(crate) fn report_error(&mut self, text: impl Into<String>) {
        self.error(text);
    }

    /// The model cache shared with the Segment workers.
    pub(crate) fn model_cache(&self) -> Arc<Mutex<jobs::segment::ModelCache>> {
        self.model_cache.clone()
    }

    /// Opens a model-file dialog; the pick is handled on a later frame.
    pub(crate) fn pick_model_file(&self, d: FileDialog) {
        self.pick(Picked::Model, d, false, false);
    }

    pub(crate) fn error(&mut self, text: impl Into<String>) {
        let text = text.into();
        #[cfg(target_arch = "wasm32")]
        if crate::gui::page::reports_wanted() {
            crate::gui::page::report_error(&text);
        }
        self.status = (text.clone(), true);
        self.dialog = Some(Dialog::Error(text));
    }

    // ----- opening -------------------------------------------------------------------------

    /// Opens an image, a volume or a DICOM folder (asks first when edits are unsaved).
    pub fn open_image(&mut self, path: PathBuf) {
        self.open(Opening::Image(path), false);
    }

    /// Opens a bundled sample with its labels.
    pub fn open_sample(&mut self, index: usize) {
        self.segment_after_open = None;
        self.open(Opening::Sample(index), false);
    }

    /// Opens a bundled sample and runs the bundled model `model` on it once it is open.
    pub fn open_sample_and_segment(&mut self, index: usize, model: &'static str) {
        self.open(Opening::Sample(index), false);
        self.segment_after_open = Some(model);
    }

    pub(crate) fn open(&mut self, what: Opening, confirmed: bool) {
        if !confirmed && self.doc.as_ref().is_some_and(|d| d.unsaved) {
            self.dialog = Some(Dialog::UnsavedOpen(what));
            return;
        }
        match what {
            Opening::Image(path) => {
                let title = format!("Opening {}", path.display());
                self.tasks.spawn(title, move |p| {
                    let v = jobs::open::open_image(&path, p)?;
                    Ok(Outcome::Document(Box::new(Document::new(v))))
                });
            }
            Opening::Sample(i) => {
                let sample = &SAMPLES[i];
                self.tasks
                    .spawn(format!("Opening sample: {}", sample.name), move |_| {
                        let (v, l) = sample.load()?;
                        let l = l.map(Box::new);
                        let names = sample.label_names.iter().map(|s| s.to_string()).collect();
                        Ok(Outcome::DocumentWithLabels(
                            Box::new(Document::new(v)),
                            l,
                            names,
                        ))
                    });
            }
        }
    }

    /// Opens a mask or label map over the current image (its grid must match).
    pub fn open_labels(&mut self, path: PathBuf) {
        if self.doc.is_none() && !self.tasks.is_idle() {
            // The image is still loading: open the labels when it arrives.
            self.labels_after_open = Some(path);
            return;
        }
        if self.doc.is_none() {
            self.error("Open an image first; a mask is shown on top of its image.");
            return;
        }
        self.tasks
            .spawn(format!("Opening labels {}", path.display()), move |p| {
                let l = jobs::open::open_labels(&path, p)?;
                Ok(Outcome::Labels(Box::new(l), path))
            });
    }

    pub(crate) fn set_document(&mut self, mut doc: Document) -> bool {
        match GpuDoc::new(
            &self.gpu.device,
            &self.gpu.queue,
            &self.gpu.renderer,
            &mut doc,
        ) {
            Ok(g) => {
                self.info(format!(
                    "Opened {} ({}×{}×{}, {})",
                    doc.image.source.path.display(),
                    doc.dims()[0],
                    doc.dims()[1],
                    doc.dims()[2],
                    doc.image.source.format
                ));
                self.gpu_doc = Some(g);
                self.doc = Some(doc);
                self.doc_serial += 1;
                self.views.clear();
                self.maximised = None;
                self.stroke = None;
                self.active_label = 1;
                true
            }
            Err(e) => {
                self.error(format!(
                    "Cannot show {}: {e}",
                    doc.image.source.path.display()
                ));
                false
            }
        }
    }

    pub(crate) fn apply_labels(&mut self, labels: LabelMap, path: PathBuf, names: &[String]) {
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        match doc.set_labels(labels, path.clone()) {
            Ok(()) => {
                for (i, n) in names.iter().enumerate() {
                    let id = i as u16 + 1;
                    doc.ensure_label(id);
                    if let Some(l) = doc.label_info.iter_mut().find(|l| l.id == id) {
                        l.name = n.clone();
                    }
                }
                doc.style_revision += 1;
                if let Some(first) = doc.present_labels().first() {
                    self.active_label = *first;
                }
                self.info(format!("Opened labels {}", path.display()));
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    // ----- saving ----------------------------------------------------------------------------

    /// Exports the labels: NIfTI (`.nii`, `.nii.gz`) with the image's header, or PNG for 2-D
    /// images. An existing file is replaced only after the user agreed (`overwrite`).
    pub fn export_labels(&mut self, path: PathBuf, overwrite: bool) {
        let Some(doc) = self.doc.as_ref() else {
            self.error("Nothing to export: no image is open.");
            return;
        };
        if let Err(e) = jobs::export::mask_format(&path, &doc.labels) {
            self.error(e.to_string());
            return;
        }
        if !overwrite && path.exists() {
            self.dialog = Some(Dialog::Replace(path));
            return;
        }
        let labels = doc.labels.clone();
        let generation = doc.undo_generation();
        let id = self
            .tasks
            .spawn(format!("Exporting {}", path.display()), move |p| {
                jobs::export::export_labels(&path, &labels, overwrite, p)?;
                Ok(Outcome::Saved(path, "labels".into()))
            });
        self.export_generation.insert(id, generation);
    }

    /// Saves a screenshot of the window as PNG (and quits afterwards when `then_quit`).
    pub fn screenshot(&mut self, path: PathBuf, then_quit: bool) {
        self.shot_target = Some((path, then_quit));
        let tx = self.shot_tx.clone();
        let ctx = self.ctx.clone();
        self.ctx
            .send_viewport_cmd(egui::ViewportCommand::Screenshot(
                egui::ScreenshotCallback::new(move |img| {
                    let _ = tx.send(img);
                    ctx.request_repaint();
                }),
            ));
    }

    pub(crate) fn write_screenshot(&mut self, img: Arc<egui::ColorImage>) {
        let Some((path, quit)) = self.shot_target.take() else {
            return;
        };
        let layout = self.layout_json(img.size);
        let result = (|| -> Result<(), String> {
            let [w, h] = img.size;
            let rgba: Vec<u8> = img.pixels.iter().flat_map(|c| c.to_array()).collect();
            let buf = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
                .ok_or("screenshot size mismatch")?;
            let mut png = Vec::new();
            buf.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| e.to_string())?;
            medseg_data::atomic::write_atomic(&path, true, |f| f.write_all(&png))
                .map_err(|e| e.to_string())?;
            let json = path.with_extension("json");
            let body = serde_json::to_vec_pretty(&layout).map_err(|e| e.to_string())?;
            medseg_data::atomic::write_atomic(&json, true, |f| f.write_all(&body))
                .map_err(|e| e.to_string())
        })();
        match result {
            Ok(()) => self.info(format!("Screenshot saved to {}", path.display())),
            Err(e) => self.error(format!(
                "Could not save the screenshot {}: {e}",
                path.display()
            )),
        }
        if quit {
            self.allow_close = true;
            self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// Where each plane lies in the last frame, in physical pixels, for checking screenshots.
    pub(crate) fn layout_json(&self, size: [usize; 2]) -> serde_json::Value {
        let ppp = self.ctx.pixels_per_point();
        let views: Vec<serde_json::Value> = self
            .drawn
            .iter()
            .map(|(plane, d)| {
                let m = &d.mapping;
                serde_json::json!({
                    "plane": plane.name(),
                    "widget_px": [d.widget.min.x * ppp, d.widget.min.y * ppp, d.widget.max.x * ppp, d.widget.max.y * ppp],
                    "image_rect_px": m.image_rect.map(|v| v * ppp),
                    "u": m.axes.u, "flip_u": m.axes.flip_u,
                    "v": m.axes.v, "flip_v": m.axes.flip_v,
                    "n": m.axes.n, "slice": m.slice, "dims": m.dims,
                    "cursor_px": d.cursor.map(|c| [c[0] * ppp, c[1] * ppp]),
                })
            })
            .collect();
        let doc = self.doc.as_ref();
        serde_json::json!({
            "size_px": size,
            "pixels_per_point": ppp,
            "image": doc.map(|d| d.image.source.path.display().to_string()),
            "opacity": doc.map(|d| d.opacity),
            "colours": doc.map(|d| d.label_info.iter().map(|l| (l.id, l.colour)).collect::<Vec<_>>()),
            "views": views,
        })
    }

    // ----- per-frame state ---------------------------------------------------------------------

    pub(crate) fn poll(&mut self, ctx: &egui::Context) {
        for (task, title, result) in self.tasks.poll() {
            match result {
                Ok(Outcome::Document(d)) => {
                    let path = d.image.source.path.clone();
                    if self.set_document(*d) {
                        if let Some(e) = self.recent.add(&path) {
                            self.status = (e, true);
                        }
                        if let Some(l) = self.labels_after_open.take() {
                            self.open_labels(l);
                        }
                    }
                }
                Ok(Outcome::DocumentWithLabels(d, l, names)) => {
                    let path = d.image.source.path.clone();
                    if self.set_document(*d) {
                        if let Some(l) = l {
                            self.apply_labels(*l, path, &names);
                        }
                        if let Some(d) = self.doc.as_mut() {
                            // A fresh sample: its labels are not an edit to save, and the
                            // first undo step should not remove them.
                            d.unsaved = false;
                            d.labels_path = None;
                            d.undo = super::undo::UndoStack::new(super::document::UNDO_LIMIT_BYTES);
                        }
                        if let Some(m) = self.segment_after_open.take() {
                            if self.choose_model(m) {
                                self.segment();
                            } else {
                                self.error(format!(
                                    "The bundled model {m:?} is not in this build."
                                ));
                            }
                        }
                    }
                }
                Ok(Outcome::Labels(l, path)) => {
                    self.apply_labels(*l, path.clone(), &[]);
                    if let Some(e) = self.recent.add(&path) {
                        self.status = (e, true);
                    }
                }
                Ok(Outcome::Saved(path, what)) => {
                    let generation = self.export_generation.remove(&task);
                    if let Some(d) = self.doc.as_mut() {
                        d.labels_path = Some(path.clone());
                        if generation == Some(d.undo_generation()) {
                            d.unsaved = false;
                        }
                    }
                    self.info(format!("Saved {what} to {}", path.display()));
                }
                Ok(Outcome::Proposal(proposal, model, serial)) => {
                    self.proposal_arrived(*proposal, &model, serial)
                }
                Ok(Outcome::ModelReady(title)) => self.info(format!("Model ready: {title}")),
                Ok(Outcome::DatasetLook(look)) => self.train_look = Some(*look),
                Err(TaskError::Cancelled) => self.info(format!("{title}: cancelled")),
                Err(TaskError::Failed(e)) => {
                    self.labels_after_open = None;
                    self.error(format!("{title} failed: {e}"));
                }
            }
        }
        while let Ok(p) = self.picked_rx.try_recv() {
            match p {
                Picked::Image(p) => self.open_image(p),
                Picked::Model(p) => self.open_model(p),
                Picked::Labels(p) => self.open_labels(p),
                Picked::Export(p) => self.export_labels(p, false),
                Picked::Screenshot(p) => self.screenshot(p, false),
                Picked::Train(field, p) => self.train_field_picked(field, p),
                Picked::Unreadable(e) => self.error(format!("Could not read the file {e}")),
            }
        }
        while let Ok(img) = self.shot_rx.try_recv() {
            self.write_screenshot(img);
        }
        // Drag-and-drop: masks (by name) go over the open image, anything else is opened.
        let dropped = ctx.input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            self.dropped(f);
        }
        // Closing with unsaved edits asks first; so does closing while a network trains.
        let training = self.training.as_ref().is_some_and(|t| t.is_running());
        if ctx.input(|i| i.viewport().close_requested()) && !self.allow_close {
            if self.doc.as_ref().is_some_and(|d| d.unsaved) {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.dialog = Some(Dialog::UnsavedClose);
            } else if training {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.dialog = Some(Dialog::TrainingClose);
            }
        }
        if self.close_after_training && !training {
            self.close_after_training = false;
            self.allow_close = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.shortcuts(ctx);
        if let Some(doc) = self.doc.as_mut() {
            if let Some(g) = self.gpu_doc.as_mut() {
                g.sync(&self.gpu.queue, doc);
            }
        }
    }

    pub(crate) fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (undo, redo) = ctx.input_mut(|i| {
            let redo = i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z)
                || i.consume_key(Modifiers::COMMAND, Key::Y);
            let undo = i.consume_key(Modifiers::COMMAND, Key::Z);
            (undo, redo)
        });
        if undo {
            self.undo();
        }
        if redo {
            self.redo();
        }
        let (b, e, n) = ctx.input(|i| {
            (
                i.key_pressed(Key::B) && i.modifiers.is_none(),
                i.key_pressed(Key::E) && i.modifiers.is_none(),
                i.key_pressed(Key::Escape),
            )
        });
        if b {
            self.tool = Tool::Brush;
        }
        if e {
            self.tool = Tool::Eraser;
        }
        if n {
            self.tool = Tool::Navigate;
        }
        let seg = ctx.input(|i| {
            i.key_pressed(super::ui::segment_panel::SEGMENT_KEY) && i.modifiers.is_none()
        });
        if seg && self.doc.is_some() && self.tasks.is_idle() {
            self.segment();
        }
    }

    pub fn undo(&mut self) {
        self.history(false);
    }

    pub fn redo(&mut self) {
        self.history(true);
    }

    pub(crate) fn history(&mut self, redo: bool) {
        if self.stroke.is_some() {
            return;
        }
        let Some(d) = self.doc.as_mut() else {
            return;
        };
        let (done, nothing) = if redo {
            (d.redo(), "Nothing to redo")
        } else {
            (d.undo(), "Nothing to undo")
        };
        match done {
            Some(name) => self.info(format!("{}: {name}", if redo { "Redid" } else { "Undid" })),
            None => self.info(nothing),
        }
    }

    // ----- UI ---------------------------------------------------------------------------------

    /// One frame: state updates, then the whole window inside `ui`.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if self.ctx != ctx {
            self.set_context(&ctx);
        }
        self.poll(&ctx);
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::Panel::left("tools")
            .resizable(true)
            .default_size(340.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.side_panel(ui));
            });
        if self.training_open {
            egui::Panel::right("training")
                .resizable(true)
                .default_size(360.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| self.train_panel(ui));
                });
        }
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE.fill(Color32::from_gray(12)))
            .show(ui, |ui| self.views_ui(ui));
        self.dialogs(&ctx);
    }

    /// A file dropped on the window: a mask (by its name) goes over the open image, anything
    /// else is opened. In the browser its bytes are read first and kept under its name.
    fn dropped(&mut self, f: egui::DroppedFileHandle) {
        let labels = self.doc.is_some() && looks_like_labels(f.path());
        let pick = move |p: PathBuf| {
            if labels {
                Picked::Labels(p)
            } else {
                Picked::Image(p)
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        if !f.path().as_os_str().is_empty() {
            let _ = self.picked_tx.send(pick(f.path().to_path_buf()));
            self.ctx.request_repaint();
        }
        #[cfg(target_arch = "wasm32")]
        {
            let (tx, ctx) = (self.picked_tx.clone(), self.ctx.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let name = f.path().to_string_lossy().into_owned();
                let picked = match f.bytes_async().await {
                    Ok(b) => pick(crate::jobs::browser_files::keep(&name, b.into())),
                    Err(e) => Picked::Unreadable(format!("{name}: {e}")),
                };
                let _ = tx.send(picked);
                ctx.request_repaint();
            });
        }
    }

    pub(crate) fn pick(
        &self,
        what: impl FnOnce(PathBuf) -> Picked + Send + 'static,
        dialog: FileDialog,
        save: bool,
        folder: bool,
    ) {
        let tx = self.picked_tx.clone();
        let ctx = self.ctx.clone();
        // The system dialog blocks; keep it off the UI thread.
        #[cfg(not(target_arch = "wasm32"))]
        std::thread::spawn(move || {
            let p = if folder {
                dialog.pick_folder()
            } else if save {
                dialog.save_file()
            } else {
                dialog.pick_file()
            };
            if let Some(p) = p {
                let _ = tx.send(what(p));
                ctx.request_repaint();
            }
        });
        // In the browser: a picked file is read into the page's memory and opened by its name;
        // a file to save needs no dialog (the browser's download asks where, if it asks).
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_futures::spawn_local(async move {
            let picked = if save {
                Some(PathBuf::from(dialog.file_name))
            } else if folder {
                None
            } else if let Some(f) = dialog.dialog.pick_file().await {
                let bytes = f.read().await;
                Some(crate::jobs::browser_files::keep(
                    &f.file_name(),
                    bytes.into(),
                ))
            } else {
                None
            };
            if let Some(p) = picked {
                let _ = tx.send(what(p));
                ctx.request_repaint();
            }
        });
    }
}

/// The file dialog of this platform: the system's (native), or the browser's file picker, with
/// the name a save would take (there a save is a download).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type FileDialog = rfd::FileDialog;

#[cfg(target_arch = "wasm32")]
pub(crate) struct FileDialog {
    dialog: rfd::AsyncFileDialog,
    file_name: String,
}

#[cfg(target_arch = "wasm32")]
impl FileDialog {
    pub(crate) fn new() -> Self {
        FileDialog {
            dialog: rfd::AsyncFileDialog::new(),
            file_name: "medseg".into(),
        }
    }

    pub(crate) fn add_filter(mut self, name: &str, extensions: &[&str]) -> Self {
        self.dialog = self.dialog.add_filter(name, extensions);
        self
    }

    pub(crate) fn set_file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    pub(crate) fn set_directory(self, _dir: impl AsRef<Path>) -> Self {
        self
    }
}

/// What a dialog does after it closed.
pub(crate) type Then = Box<dyn FnOnce(&mut MedsegApp)>;

/// A file name that says it holds labels (opened over the image when dropped).
pub(crate) fn looks_like_labels(p: &Path) -> bool {
    let s = p.to_string_lossy().to_ascii_lowercase();
    ["mask", "label", "seg", "annot"]
        .iter()
        .any(|k| s.contains(k))
}

impl eframe::App for MedsegApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self) {
        // However the window goes, a training run stops after its step and saves first.
        if let Some(t) = self.training.as_mut() {
            t.stop();
            t.join();
        }
    }
}
