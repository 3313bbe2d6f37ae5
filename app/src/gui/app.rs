//! The app: state handling (tasks, documents, dialogs, shortcuts) and the UI that shows it.

use super::document::{is_photo, Document, Plane, Stroke, ViewMapping, Window, CT_PRESETS};
use super::recent::Recent;
use super::render::{GpuDoc, SliceRenderer, ViewUniforms};
use super::sample::SAMPLES;
use super::tasks::{Outcome, TaskError, Tasks};
use egui::{Color32, Key, Modifiers, PointerButton, Pos2, Rect, Sense, Stroke as Line, Vec2};
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
struct ViewState {
    zoom: f32,
    pan: Vec2,
    /// Wheel movement not yet turned into whole slices.
    scroll: f32,
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

enum Dialog {
    Error(String),
    /// Export would replace this file.
    Replace(PathBuf),
    /// Unsaved edits and the user asked to close the window.
    UnsavedClose,
    /// Unsaved edits and the user asked to open another image.
    UnsavedOpen(Opening),
}

/// Something to open once the user agreed.
#[derive(Clone, Debug)]
pub enum Opening {
    Image(PathBuf),
    Sample(usize),
}

/// What a file dialog (running on its own thread) picked.
enum Picked {
    Image(PathBuf),
    Labels(PathBuf),
    Export(PathBuf),
    Screenshot(PathBuf),
}

struct Gpu {
    instance: wgpu::Instance,
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    renderer: SliceRenderer,
    /// burn on this same device, started on first use.
    compute: Option<medseg_model::gpu::GpuContext>,
}

pub struct MedsegApp {
    gpu: Gpu,
    pub doc: Option<Document>,
    gpu_doc: Option<GpuDoc>,
    pub tasks: Tasks,
    pub tool: Tool,
    pub brush_radius_mm: f32,
    pub active_label: u16,
    views: HashMap<Plane, ViewState>,
    pub maximised: Option<Plane>,
    stroke: Option<(Plane, Stroke)>,
    /// The last status message and whether it is an error.
    pub status: (String, bool),
    recent: Recent,
    dialog: Option<Dialog>,
    hover: Option<(Plane, [usize; 3])>,
    pub drawn: HashMap<Plane, DrawnView>,
    /// Close the window once edits are saved or discarded.
    allow_close: bool,
    open_path_text: String,
    picked_tx: Sender<Picked>,
    picked_rx: Receiver<Picked>,
    shot_tx: Sender<Arc<egui::ColorImage>>,
    shot_rx: Receiver<Arc<egui::ColorImage>>,
    /// Where the next screenshot goes, and whether to quit after writing it.
    shot_target: Option<(PathBuf, bool)>,
    /// Labels to open once the image being loaded arrives.
    labels_after_open: Option<PathBuf>,
    /// Export generation (the document's edit count when the export started).
    export_generation: HashMap<u64, u64>,
    ctx: egui::Context,
    ctx_slot: ContextSlot,
}

/// The egui context workers wake; set on the first frame.
type ContextSlot = Arc<Mutex<Option<egui::Context>>>;

fn wake(slot: &ContextSlot) -> Arc<dyn Fn() + Send + Sync> {
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
            medseg_model::gpu::kernel_self_test(&ctx.device)?;
            self.gpu.compute = Some(ctx);
        }
        Ok(self.gpu.compute.as_ref().expect("just set"))
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

    fn info(&mut self, text: impl Into<String>) {
        self.status = (text.into(), false);
    }

    fn error(&mut self, text: impl Into<String>) {
        let text = text.into();
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
        self.open(Opening::Sample(index), false);
    }

    fn open(&mut self, what: Opening, confirmed: bool) {
        if !confirmed && self.doc.as_ref().is_some_and(|d| d.unsaved) {
            self.dialog = Some(Dialog::UnsavedOpen(what));
            return;
        }
        match what {
            Opening::Image(path) => {
                let title = format!("Opening {}", path.display());
                self.tasks.spawn(title, move |p| {
                    p.report(None, "reading");
                    let v = if path.is_dir() {
                        medseg_data::dicom::load_series_with(&path, None, &mut |done, total| {
                            p.report(
                                Some(done as f32 / total.max(1) as f32),
                                format!("slice {done} of {total}"),
                            )
                        })
                    } else {
                        medseg_data::load(&path)
                    };
                    v.map(|v| Outcome::Document(Box::new(Document::new(v))))
                        .map_err(|e| e.to_string())
                });
            }
            Opening::Sample(i) => {
                let sample = &SAMPLES[i];
                self.tasks
                    .spawn(format!("Opening sample: {}", sample.name), move |_| {
                        let (v, l) = sample.load().map_err(|e| e.to_string())?;
                        let names = sample.label_names.iter().map(|s| s.to_string()).collect();
                        Ok(Outcome::DocumentWithLabels(
                            Box::new(Document::new(v)),
                            Box::new(l),
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
                p.report(None, "reading");
                medseg_data::load_labels(&path)
                    .map(|l| Outcome::Labels(Box::new(l), path))
                    .map_err(|e| e.to_string())
            });
    }

    fn set_document(&mut self, mut doc: Document) -> bool {
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

    fn apply_labels(&mut self, labels: LabelMap, path: PathBuf, names: &[String]) {
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
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let png = name.ends_with(".png");
        if !png && !name.ends_with(".nii") && !name.ends_with(".nii.gz") {
            self.error(format!(
                "{}: choose a name ending in .nii.gz or .nii (NIfTI){}",
                path.display(),
                if doc.is_2d() { " or .png" } else { "" }
            ));
            return;
        }
        if png && !doc.is_2d() {
            self.error(format!(
                "{}: a PNG holds one slice; this volume has {}; export it as .nii.gz",
                path.display(),
                doc.dims()[2]
            ));
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
                p.report(None, "writing");
                let r = if png {
                    medseg_data::raster::write_png_labels(&path, &labels, overwrite)
                } else {
                    medseg_data::nifti::write_labels(&path, &labels, overwrite)
                };
                r.map(|()| Outcome::Saved(path, "labels".into()))
                    .map_err(|e| e.to_string())
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

    fn write_screenshot(&mut self, img: Arc<egui::ColorImage>) {
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
    fn layout_json(&self, size: [usize; 2]) -> serde_json::Value {
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

    fn poll(&mut self, ctx: &egui::Context) {
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
                        self.apply_labels(*l, path, &names);
                        if let Some(d) = self.doc.as_mut() {
                            // A fresh sample: its labels are not an edit to save, and the
                            // first undo step should not remove them.
                            d.unsaved = false;
                            d.labels_path = None;
                            d.undo = super::undo::UndoStack::new(super::document::UNDO_LIMIT_BYTES);
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
                Picked::Labels(p) => self.open_labels(p),
                Picked::Export(p) => self.export_labels(p, false),
                Picked::Screenshot(p) => self.screenshot(p, false),
            }
        }
        while let Ok(img) = self.shot_rx.try_recv() {
            self.write_screenshot(img);
        }
        // Drag-and-drop: masks (by name) go over the open image, anything else is opened.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for p in dropped {
            if self.doc.is_some() && looks_like_labels(&p) {
                self.open_labels(p);
            } else {
                self.open_image(p);
            }
        }
        // Closing with unsaved edits asks first.
        if ctx.input(|i| i.viewport().close_requested())
            && !self.allow_close
            && self.doc.as_ref().is_some_and(|d| d.unsaved)
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.dialog = Some(Dialog::UnsavedClose);
        }
        self.shortcuts(ctx);
        if let Some(doc) = self.doc.as_mut() {
            if let Some(g) = self.gpu_doc.as_mut() {
                g.sync(&self.gpu.queue, doc);
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
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
    }

    pub fn undo(&mut self) {
        self.history(false);
    }

    pub fn redo(&mut self) {
        self.history(true);
    }

    fn history(&mut self, redo: bool) {
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
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE.fill(Color32::from_gray(12)))
            .show(ui, |ui| self.views_ui(ui));
        self.dialogs(&ctx);
    }

    fn pick(&self, what: fn(PathBuf) -> Picked, dialog: rfd::FileDialog, save: bool, folder: bool) {
        let tx = self.picked_tx.clone();
        let ctx = self.ctx.clone();
        // The system dialog blocks; keep it off the UI thread.
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
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open image or volume…").clicked() {
                    let d = rfd::FileDialog::new()
                        .add_filter(
                            "Images and volumes",
                            &[
                                "nii", "gz", "dcm", "png", "jpg", "jpeg", "bmp", "tif", "tiff",
                            ],
                        )
                        .add_filter("All files", &["*"]);
                    self.pick(Picked::Image, d, false, false);
                }
                if ui.button("Open DICOM folder…").clicked() {
                    self.pick(Picked::Image, rfd::FileDialog::new(), false, true);
                }
                let has_doc = self.doc.is_some();
                if ui
                    .add_enabled(has_doc, egui::Button::new("Open mask or labels…"))
                    .clicked()
                {
                    let d = rfd::FileDialog::new().add_filter(
                        "Masks and label maps",
                        &["nii", "gz", "png", "bmp", "tif", "tiff"],
                    );
                    self.pick(Picked::Labels, d, false, false);
                }
                ui.horizontal(|ui| {
                    ui.label("Path:");
                    let r = ui.text_edit_singleline(&mut self.open_path_text);
                    if r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
                        let p = PathBuf::from(self.open_path_text.trim());
                        self.open_image(p);
                        ui.close();
                    }
                });
                ui.menu_button("Recent", |ui| {
                    if self.recent.paths.is_empty() {
                        ui.label("Nothing opened yet");
                    }
                    for p in self.recent.paths.clone() {
                        if ui.button(p.display().to_string()).clicked() {
                            if self.doc.is_some() && looks_like_labels(&p) {
                                self.open_labels(p);
                            } else {
                                self.open_image(p);
                            }
                        }
                    }
                });
                ui.menu_button("Samples", |ui| {
                    for (i, s) in SAMPLES.iter().enumerate() {
                        if ui.button(s.name).clicked() {
                            self.open_sample(i);
                        }
                    }
                });
                ui.separator();
                if ui
                    .add_enabled(has_doc, egui::Button::new("Export mask…"))
                    .clicked()
                {
                    self.pick_export();
                }
                if ui.button("Save screenshot…").clicked() {
                    let d = rfd::FileDialog::new()
                        .add_filter("PNG", &["png"])
                        .set_file_name("medseg-screenshot.png");
                    self.pick(Picked::Screenshot, d, true, false);
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Edit", |ui| {
                let (u, r) = self
                    .doc
                    .as_ref()
                    .map(|d| {
                        (
                            d.undo.undo_name().map(str::to_string),
                            d.undo.redo_name().map(str::to_string),
                        )
                    })
                    .unwrap_or((None, None));
                let label = |k: &str, n: &Option<String>| match n {
                    Some(n) => format!("{k} {n}"),
                    None => k.to_string(),
                };
                if ui
                    .add_enabled(
                        u.is_some(),
                        egui::Button::new(label("Undo", &u)).shortcut_text("Ctrl+Z"),
                    )
                    .clicked()
                {
                    self.undo();
                }
                if ui
                    .add_enabled(
                        r.is_some(),
                        egui::Button::new(label("Redo", &r)).shortcut_text("Ctrl+Shift+Z"),
                    )
                    .clicked()
                {
                    self.redo();
                }
            });
        });
    }

    fn pick_export(&self) {
        let Some(doc) = self.doc.as_ref() else {
            return;
        };
        let stem = doc
            .image
            .source
            .path
            .file_name()
            .map(|n| {
                let n = n.to_string_lossy();
                let n = n.strip_suffix(".gz").unwrap_or(&n).to_string();
                n.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or(n)
            })
            .unwrap_or_else(|| "mask".into());
        let (name, filter): (String, &[&str]) = if doc.is_2d() && is_photo(&doc.image) {
            (format!("{stem}_mask.png"), &["png", "nii", "gz"])
        } else {
            (format!("{stem}_labels.nii.gz"), &["nii", "gz"])
        };
        let mut d = rfd::FileDialog::new()
            .add_filter("Mask", filter)
            .set_file_name(name);
        if let Some(dir) = doc.image.source.path.parent() {
            d = d.set_directory(dir);
        }
        self.pick(Picked::Export, d, true, false);
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let mut cancel = None;
            for t in &self.tasks.running {
                ui.label(&t.title);
                match t.fraction {
                    Some(f) => {
                        ui.add(egui::ProgressBar::new(f).desired_width(140.0).show_percentage());
                    }
                    None => {
                        ui.spinner();
                    }
                }
                if !t.text.is_empty() {
                    ui.label(&t.text);
                }
                if t.is_cancelling() {
                    ui.label("cancelling…");
                } else if ui.button("Cancel").clicked() {
                    cancel = Some(t.id);
                }
                ui.separator();
            }
            if let Some(id) = cancel {
                if let Some(t) = self.tasks.running.iter().find(|t| t.id == id) {
                    t.cancel();
                }
            }
            if let (Some(doc), Some((_, v))) = (self.doc.as_ref(), self.hover) {
                let values = doc.value_at(v);
                let value = if values.len() == 3 {
                    format!("RGB {:.0} {:.0} {:.0}", values[0], values[1], values[2])
                } else if doc.ct {
                    format!("{:.0} HU", values[0])
                } else {
                    format!("{:.4}", values[0])
                };
                let w = doc
                    .image
                    .geometry
                    .world([v[0] as f64, v[1] as f64, v[2] as f64]);
                let l = doc.label_at(v);
                let name = doc
                    .label_info
                    .iter()
                    .find(|i| i.id == l)
                    .map(|i| format!(" {}", i.name))
                    .unwrap_or_default();
                ui.monospace(format!(
                    "voxel ({}, {}, {})  {value}  world ({:.1}, {:.1}, {:.1}) mm RAS  label {l}{name}",
                    v[0], v[1], v[2], w[0], w[1], w[2]
                ));
                ui.separator();
            }
            let (text, err) = &self.status;
            if *err {
                ui.colored_label(Color32::from_rgb(255, 110, 110), text);
            } else {
                ui.label(text);
            }
        });
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        let Some(doc) = self.doc.as_mut() else {
            ui.heading("No image open");
            ui.label("Use File > Open, drop a file on the window, or File > Samples.");
            return;
        };
        ui.heading("Tools");
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.tool, Tool::Navigate, "Navigate");
            ui.selectable_value(&mut self.tool, Tool::Brush, "Brush");
            ui.selectable_value(&mut self.tool, Tool::Eraser, "Eraser");
        });
        ui.add(
            egui::Slider::new(&mut self.brush_radius_mm, 0.5..=50.0)
                .logarithmic(true)
                .text("radius mm"),
        );
        ui.separator();
        ui.heading("Window");
        let wl_scale = doc.auto_window.width.abs().max(1.0) / 200.0;
        ui.horizontal(|ui| {
            ui.label("Level");
            ui.add(egui::DragValue::new(&mut doc.window.level).speed(wl_scale));
            ui.label("Width");
            ui.add(
                egui::DragValue::new(&mut doc.window.width)
                    .speed(wl_scale)
                    .range(1e-3..=f32::MAX),
            );
        });
        ui.horizontal_wrapped(|ui| {
            if doc.ct {
                for (name, w) in CT_PRESETS {
                    if ui.button(name).clicked() {
                        doc.window = w;
                    }
                }
            }
            if ui.button("Auto").clicked() {
                doc.window = doc.auto_window;
            }
        });
        ui.separator();
        ui.heading("Labels");
        let before = (doc.opacity, doc.outline, doc.show_labels);
        ui.checkbox(&mut doc.show_labels, "Show labels");
        ui.add(egui::Slider::new(&mut doc.opacity, 0.0..=1.0).text("opacity"));
        ui.checkbox(&mut doc.outline, "Outline only");
        if before != (doc.opacity, doc.outline, doc.show_labels) {
            doc.style_revision += 1;
        }
        let voxel_ml = doc.voxel_ml();
        let mut clear = None;
        let mut style_changed = false;
        for l in doc.label_info.iter_mut() {
            ui.horizontal(|ui| {
                ui.radio_value(
                    &mut self.active_label,
                    l.id,
                    egui::RichText::new(format!("{:>3}", l.id)).monospace(),
                );
                style_changed |= ui.checkbox(&mut l.visible, "").changed();
                style_changed |= ui.color_edit_button_srgb(&mut l.colour).changed();
                ui.add(egui::TextEdit::singleline(&mut l.name).desired_width(170.0));
            });
        }
        if style_changed {
            doc.style_revision += 1;
        }
        ui.horizontal(|ui| {
            if ui.button("New label").clicked() {
                if let Some(id) = doc.new_label() {
                    self.active_label = id;
                }
            }
            if ui
                .button(format!("Clear label {}", self.active_label))
                .clicked()
            {
                clear = Some(self.active_label);
            }
        });
        if let Some(l) = clear {
            doc.clear_label(l);
        }
        ui.separator();
        ui.heading("Volumes");
        egui::Grid::new("stats").striped(true).show(ui, |ui| {
            ui.label("label");
            ui.label("voxels");
            ui.label("ml");
            ui.end_row();
            for l in &doc.label_info {
                let n = doc.count(l.id);
                ui.label(&l.name);
                ui.label(n.to_string());
                ui.label(format!("{:.2}", n as f64 * voxel_ml));
                ui.end_row();
            }
        });
        if doc.undo.forgotten > 0 {
            ui.label(format!(
                "The oldest {} edits can no longer be undone (history limit).",
                doc.undo.forgotten
            ));
        }
        if doc.unsaved {
            ui.colored_label(Color32::from_rgb(255, 200, 80), "Unsaved edits");
        }
    }

    fn views_ui(&mut self, ui: &mut egui::Ui) {
        self.drawn.clear();
        let area = ui.available_rect_before_wrap();
        let Some(doc) = self.doc.as_ref() else {
            ui.centered_and_justified(|ui| {
                ui.label(if self.tasks.is_idle() {
                    "Open an image, a volume or a DICOM folder (File menu or drop a file here)"
                } else {
                    "Loading…"
                });
            });
            return;
        };
        let layout: Vec<(Plane, Rect)> = if doc.is_2d() {
            vec![(Plane::Axial, area)]
        } else if let Some(p) = self.maximised {
            vec![(p, area)]
        } else {
            let half = area.size() * 0.5;
            let cell = |i: f32, j: f32| {
                Rect::from_min_size(area.min + Vec2::new(i * half.x, j * half.y), half).shrink(1.0)
            };
            vec![
                (Plane::Axial, cell(0.0, 0.0)),
                (Plane::Sagittal, cell(1.0, 0.0)),
                (Plane::Coronal, cell(0.0, 1.0)),
            ]
        };
        self.hover = None;
        for (slot, (plane, rect)) in layout.into_iter().enumerate() {
            self.view_ui(ui, slot, plane, rect);
        }
        if let (Some(doc), None, false) = (
            self.doc.as_ref(),
            self.maximised,
            self.doc.as_ref().is_some_and(|d| d.is_2d()),
        ) {
            let r = Rect::from_min_size(area.center(), area.size() * 0.5).shrink(8.0);
            let d = doc.dims();
            let sp = doc.image.geometry.spacing_mm;
            let text = format!(
                "{}\n{}×{}×{} voxels, {:.2}×{:.2}×{:.2} mm, {}\n\nWheel: slice · Ctrl+wheel: zoom\nRight-drag: window/level · Shift- or middle-drag: pan\nDouble-click: maximise · B brush · E eraser · Esc navigate",
                doc.image.source.path.display(),
                d[0], d[1], d[2], sp[0], sp[1], sp[2],
                doc.image.geometry.orientation()
            );
            ui.painter().text(
                r.left_top(),
                egui::Align2::LEFT_TOP,
                text,
                egui::FontId::proportional(12.0),
                Color32::from_gray(170),
            );
        }
    }

    fn view_ui(&mut self, ui: &mut egui::Ui, slot: usize, plane: Plane, rect: Rect) {
        if rect.width() < 4.0 || rect.height() < 4.0 {
            return;
        }
        let id = ui.scope_id().with(("view", plane.name()));
        let response = ui.interact(rect, id, Sense::click_and_drag());
        let Some(doc) = self.doc.as_mut() else {
            return;
        };
        let state = self.views.entry(plane).or_default();
        let pointer = response.hover_pos();

        // Zoom (Ctrl+wheel, about the pointer) and slice scrolling (wheel, arrows, page keys).
        if let Some(pos) = pointer {
            let (wheel, zoom_wheel, keys) = ui.input(|i| {
                let mut wheel = 0.0;
                let mut zoom = 0.0;
                for e in &i.events {
                    if let egui::Event::MouseWheel {
                        unit,
                        delta,
                        modifiers,
                        ..
                    } = e
                    {
                        let lines = match unit {
                            egui::MouseWheelUnit::Line => delta.y,
                            egui::MouseWheelUnit::Point => delta.y / 50.0,
                            egui::MouseWheelUnit::Page => delta.y * 10.0,
                        };
                        if modifiers.command {
                            zoom += lines;
                        } else {
                            wheel += lines;
                        }
                    }
                }
                let mut keys = 0i32;
                for (k, d) in [
                    (Key::ArrowUp, 1),
                    (Key::PageUp, 1),
                    (Key::ArrowDown, -1),
                    (Key::PageDown, -1),
                ] {
                    if i.key_pressed(k) {
                        keys += d;
                    }
                }
                (wheel, zoom, keys)
            });
            if zoom_wheel != 0.0 {
                let old = state.zoom;
                state.zoom = (state.zoom * 1.15f32.powf(zoom_wheel)).clamp(0.25, 64.0);
                // Keep the point under the pointer fixed.
                let c = rect.center() + state.pan;
                state.pan += (pos - c) * (1.0 - state.zoom / old);
            }
            state.scroll += wheel;
            let steps = state.scroll.trunc() as i32 + keys;
            state.scroll -= state.scroll.trunc();
            if steps != 0 && !doc.is_2d() {
                let axes = super::document::plane_axes(&doc.image, plane);
                let n = doc.dims()[axes.n] as i64;
                let s = (doc.cursor[axes.n] as i64 + steps as i64).clamp(0, n - 1);
                doc.cursor[axes.n] = s as usize;
            }
        }

        // Pan: middle drag or Shift + primary drag.
        let shift = ui.input(|i| i.modifiers.shift);
        if response.dragged_by(PointerButton::Middle)
            || (shift && response.dragged_by(PointerButton::Primary))
        {
            state.pan += response.drag_delta();
        }
        // Window/level: right drag (horizontal = width, vertical = level).
        if response.dragged_by(PointerButton::Secondary) {
            let d = response.drag_delta();
            let s = doc.auto_window.width.abs().max(1e-3) / 250.0;
            doc.window = Window {
                level: doc.window.level - d.y * s,
                width: (doc.window.width + d.x * s).max(1e-3),
            };
        }
        if response.double_clicked() && !doc.is_2d() {
            self.maximised = if self.maximised.is_some() {
                None
            } else {
                Some(plane)
            };
        }

        let mapping = ViewMapping::new(
            doc,
            plane,
            [rect.min.x, rect.min.y, rect.max.x, rect.max.y],
            state.zoom,
            [state.pan.x, state.pan.y],
        );

        // Primary button without Shift: move the crosshair or paint.
        let primary_down = ui.input(|i| i.pointer.primary_down());
        let on_view = response.is_pointer_button_down_on() && primary_down && !shift;
        let pos = ui.input(|i| i.pointer.interact_pos());
        if on_view {
            if let Some(pos) = pos {
                match self.tool {
                    Tool::Navigate => {
                        if let Some(v) = mapping.voxel_index_at(pos.x, pos.y) {
                            let n = mapping.axes.n;
                            let keep = doc.cursor[n];
                            doc.cursor = v;
                            doc.cursor[n] = keep;
                        }
                    }
                    Tool::Brush | Tool::Eraser => {
                        let value = if self.tool == Tool::Brush {
                            self.active_label
                        } else {
                            0
                        };
                        let p = mapping.voxel_at(pos.x, pos.y);
                        let stroke = match &mut self.stroke {
                            Some((pl, s)) if *pl == plane => s,
                            _ => {
                                self.stroke = Some((plane, Stroke::default()));
                                &mut self.stroke.as_mut().expect("just set").1
                            }
                        };
                        doc.brush(mapping.axes, p, self.brush_radius_mm as f64, value, stroke);
                    }
                }
            }
        }
        if !primary_down && self.stroke.as_ref().is_some_and(|(pl, _)| *pl == plane) {
            let (_, s) = self.stroke.take().expect("checked");
            let name = if self.tool == Tool::Eraser {
                "Eraser"
            } else {
                "Brush"
            };
            doc.finish_stroke(name, s);
        }
        if let Some(pos) = pointer {
            if let Some(v) = mapping.voxel_index_at(pos.x, pos.y) {
                self.hover = Some((plane, v));
            }
        }

        // Draw: the slice on the GPU, then crosshair, letters and the brush outline.
        let widget = [rect.min.x, rect.min.y, rect.max.x, rect.max.y];
        if let Some(g) = self.gpu_doc.as_ref() {
            let u = ViewUniforms::new(doc, &mapping, widget);
            let cb = g.view_callback(&self.gpu.queue, &self.gpu.renderer, slot, &u);
            ui.painter_at(rect)
                .add(egui_wgpu::Callback::new_paint_callback(rect, cb));
        }
        let painter = ui.painter_at(rect);
        let ir = mapping.image_rect;
        let image_rect = Rect::from_min_max(Pos2::new(ir[0], ir[1]), Pos2::new(ir[2], ir[3]));
        if !doc.is_2d() {
            let c = doc.cursor;
            let centre = [c[0] as f64 + 0.5, c[1] as f64 + 0.5, c[2] as f64 + 0.5];
            let s = mapping.screen_of(centre);
            let line = Line::new(1.0, Color32::from_rgba_unmultiplied(255, 220, 0, 110));
            painter.vline(s[0], image_rect.y_range(), line);
            painter.hline(image_rect.x_range(), s[1], line);
            let n = mapping.axes.n;
            painter.text(
                rect.left_top() + Vec2::new(6.0, 4.0),
                egui::Align2::LEFT_TOP,
                format!("{} {}/{}", plane.name(), doc.cursor[n] + 1, doc.dims()[n]),
                egui::FontId::proportional(13.0),
                Color32::from_gray(220),
            );
        }
        if let Some(l) = mapping.axes.letters {
            let font = egui::FontId::proportional(15.0);
            let col = Color32::from_rgb(255, 180, 60);
            let m = 10.0;
            for (ch, pos, align) in [
                (
                    l[0],
                    Pos2::new(rect.left() + m, rect.center().y),
                    egui::Align2::LEFT_CENTER,
                ),
                (
                    l[1],
                    Pos2::new(rect.right() - m, rect.center().y),
                    egui::Align2::RIGHT_CENTER,
                ),
                (
                    l[2],
                    Pos2::new(rect.center().x, rect.top() + m + 14.0),
                    egui::Align2::CENTER_TOP,
                ),
                (
                    l[3],
                    Pos2::new(rect.center().x, rect.bottom() - m),
                    egui::Align2::CENTER_BOTTOM,
                ),
            ] {
                painter.text(pos, align, ch.to_string(), font.clone(), col);
            }
        }
        if matches!(self.tool, Tool::Brush | Tool::Eraser) {
            if let Some(pos) = pointer {
                let sp = doc.image.geometry.spacing_mm[mapping.axes.u];
                let per_mm = image_rect.width() / (mapping.dims[mapping.axes.u] as f32 * sp as f32);
                painter.circle_stroke(
                    pos,
                    self.brush_radius_mm * per_mm,
                    Line::new(1.0, Color32::WHITE),
                );
            }
        }
        let cursor = (!doc.is_2d()).then(|| {
            let c = doc.cursor;
            mapping.screen_of([c[0] as f64 + 0.5, c[1] as f64 + 0.5, c[2] as f64 + 0.5])
        });
        self.drawn.insert(
            plane,
            DrawnView {
                widget: rect,
                mapping,
                cursor,
            },
        );
    }

    fn dialogs(&mut self, ctx: &egui::Context) {
        let Some(dialog) = self.dialog.take() else {
            return;
        };
        let mut keep = true;
        let mut then: Option<Then> = None;
        let title = match &dialog {
            Dialog::Error(_) => "Problem",
            Dialog::Replace(_) => "Replace file?",
            Dialog::UnsavedClose | Dialog::UnsavedOpen(_) => "Unsaved edits",
        };
        egui::Window::new(title)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, Vec2::ZERO)
            .show(ctx, |ui| match &dialog {
                Dialog::Error(e) => {
                    ui.label(e);
                    if ui.button("OK").clicked() {
                        keep = false;
                    }
                }
                Dialog::Replace(p) => {
                    ui.label(format!("{} exists. Replace it?", p.display()));
                    ui.horizontal(|ui| {
                        if ui.button("Replace").clicked() {
                            let p = p.clone();
                            then = Some(Box::new(move |app| app.export_labels(p, true)));
                            keep = false;
                        }
                        if ui.button("Cancel").clicked() {
                            keep = false;
                        }
                    });
                }
                Dialog::UnsavedClose | Dialog::UnsavedOpen(_) => {
                    ui.label("The labels have edits that were not exported.");
                    ui.horizontal(|ui| {
                        if ui.button("Export mask…").clicked() {
                            then = Some(Box::new(|app| app.pick_export()));
                            keep = false;
                        }
                        let discard = if matches!(dialog, Dialog::UnsavedClose) {
                            "Discard and quit"
                        } else {
                            "Discard and open"
                        };
                        if ui.button(discard).clicked() {
                            keep = false;
                            then = Some(match &dialog {
                                Dialog::UnsavedOpen(what) => {
                                    let what = what.clone();
                                    Box::new(move |app| app.open(what, true))
                                }
                                _ => Box::new(|app| {
                                    app.allow_close = true;
                                    app.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                                }),
                            });
                        }
                        if ui.button("Cancel").clicked() {
                            keep = false;
                        }
                    });
                }
            });
        if keep {
            self.dialog = Some(dialog);
        }
        if let Some(f) = then {
            f(self);
        }
    }
}

/// What a dialog does after it closed.
type Then = Box<dyn FnOnce(&mut MedsegApp)>;

/// A file name that says it holds labels (opened over the image when dropped).
fn looks_like_labels(p: &Path) -> bool {
    let s = p.to_string_lossy().to_ascii_lowercase();
    ["mask", "label", "seg", "annot"]
        .iter()
        .any(|k| s.contains(k))
}

impl eframe::App for MedsegApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}
