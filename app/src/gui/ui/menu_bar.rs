//! The menu bar: File (open, samples, recent, export, screenshot), Segment, Edit.

use crate::gui::app::*;
use crate::gui::document::is_photo;
use crate::gui::sample::SAMPLES;
use crate::jobs;
use egui::Key;
use std::path::PathBuf;

impl MedsegApp {
    pub(crate) fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open image or volume…").clicked() {
                    let d = FileDialog::new()
                        .add_filter(
                            "Images and volumes",
                            &[
                                "nii", "gz", "dcm", "png", "jpg", "jpeg", "bmp", "tif", "tiff",
                            ],
                        )
                        .add_filter("All files", &["*"]);
                    self.pick(Picked::Image, d, false, false);
                }
                // A page cannot open folders or paths, keep a recent list or save screenshots
                // (nor train yet): those stay on the desktop.
                let desktop = cfg!(not(target_arch = "wasm32"));
                if desktop && ui.button("Open DICOM folder…").clicked() {
                    self.pick(Picked::Image, FileDialog::new(), false, true);
                }
                let has_doc = self.doc.is_some();
                if ui
                    .add_enabled(has_doc, egui::Button::new("Open mask or labels…"))
                    .clicked()
                {
                    let d = FileDialog::new().add_filter(
                        "Masks and label maps",
                        &["nii", "gz", "png", "bmp", "tif", "tiff"],
                    );
                    self.pick(Picked::Labels, d, false, false);
                }
                if desktop {
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
                }
                ui.menu_button("Samples", |ui| {
                    for (i, s) in SAMPLES.iter().enumerate() {
                        if ui.button(s.name).clicked() {
                            self.open_sample(i);
                        }
                        let bundled = |m: &&str| jobs::models::BUNDLED.iter().any(|b| b.id == *m);
                        if let Some(m) = s.model.filter(bundled) {
                            if ui.button(format!("{} — segment it", s.name)).clicked() {
                                self.open_sample_and_segment(i, m);
                            }
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
                if desktop && ui.button("Save screenshot…").clicked() {
                    let d = FileDialog::new()
                        .add_filter("PNG", &["png"])
                        .set_file_name("medseg-screenshot.png");
                    self.pick(Picked::Screenshot, d, true, false);
                }
                ui.separator();
                if desktop && ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            self.segment_menu(ui);
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
            if cfg!(target_arch = "wasm32") {
                return;
            }
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.training_open, "Training panel");
            });
            if ui
                .selectable_label(self.training_open, "Training")
                .on_hover_text("Train a network on a dataset folder (the same job as medseg train)")
                .clicked()
            {
                self.training_open = !self.training_open;
            }
        });
    }

    pub(crate) fn pick_export(&self) {
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
        let mut d = FileDialog::new()
            .add_filter("Mask", filter)
            .set_file_name(name);
        if let Some(dir) = doc.image.source.path.parent() {
            d = d.set_directory(dir);
        }
        self.pick(Picked::Export, d, true, false);
    }
}
