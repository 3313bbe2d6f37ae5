//! The status bar: running tasks with progress and Cancel, the hovered voxel's read-out, messages.

use crate::gui::app::*;
use egui::Color32;

impl MedsegApp {
    pub(crate) fn status_bar(&mut self, ui: &mut egui::Ui) {
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
}
