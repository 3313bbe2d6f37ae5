//! Modal dialogs: errors, replacing a file, unsaved edits on close or open.

use crate::gui::app::*;
use egui::Vec2;

impl MedsegApp {
    pub(crate) fn dialogs(&mut self, ctx: &egui::Context) {
        let Some(dialog) = self.dialog.take() else {
            return;
        };
        let mut keep = true;
        let mut then: Option<Then> = None;
        let title = match &dialog {
            Dialog::Error(_) => "Problem",
            Dialog::Replace(_) => "Replace file?",
            Dialog::UnsavedClose | Dialog::UnsavedOpen(_) => "Unsaved edits",
            Dialog::TrainingClose => "Training is running",
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
                Dialog::TrainingClose => {
                    ui.label(
                        "A network is training. Stop it and close? The run is saved after \
                         the current step and can be continued from the Training panel.",
                    );
                    ui.horizontal(|ui| {
                        if ui.button("Stop, save and close").clicked() {
                            then = Some(Box::new(|app| {
                                if let Some(t) = &app.training {
                                    t.stop();
                                }
                                app.close_after_training = true;
                            }));
                            keep = false;
                        }
                        if ui.button("Keep training").clicked() {
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
