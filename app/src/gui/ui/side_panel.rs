//! The side panel: Segment, tools and brush, window/level, the label table.

use crate::gui::app::*;
use crate::gui::document::CT_PRESETS;
use egui::Color32;

impl MedsegApp {
    pub(crate) fn side_panel(&mut self, ui: &mut egui::Ui) {
        if self.doc.is_none() {
            ui.heading("No image open");
            ui.label("Use File > Open, drop a file on the window, or File > Samples.");
            return;
        }
        self.segment_panel(ui);
        ui.separator();
        let Some(doc) = self.doc.as_mut() else {
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
}
