//! The Training panel (right side, View > Training): dataset, network and settings, what the
//! dataset holds, Start / Pause / Resume / Stop, live loss and validation-DSC curves with the
//! learning rate, images per second, time left and GPU memory, the log, and "Use this model"
//! for Segment. The run itself is `gui::training` (the `medseg train` job on its own thread).

use crate::gui::app::*;
use crate::gui::tasks::Outcome;
use crate::gui::training::{self, Live, Start, TrainingRun, MODELS};
use egui::{Color32, Pos2, Stroke};
use std::path::PathBuf;

/// Which form field a folder or file dialog fills.
#[derive(Clone, Copy, Debug)]
pub enum TrainField {
    Data,
    Out,
    Init,
    Split,
}

impl MedsegApp {
    /// A dialog picked a path for the training form.
    pub(crate) fn train_field_picked(&mut self, field: TrainField, p: PathBuf) {
        let text = p.display().to_string();
        match field {
            TrainField::Data => {
                self.train_form.data = text;
                self.look_at_dataset();
            }
            TrainField::Out => self.train_form.out = text,
            TrainField::Init => self.train_form.init = text,
            TrainField::Split => self.train_form.split = text,
        }
    }

    /// Scans the dataset folder of the form and loads a sample of its pairs (a worker task).
    pub fn look_at_dataset(&mut self) {
        let root = PathBuf::from(self.train_form.data.trim());
        let instances = self.train_form.instances;
        self.train_look = None;
        self.tasks
            .spawn(format!("Looking at {}", root.display()), move |p| {
                let look = training::look_at(
                    &root,
                    instances,
                    &mut crate::jobs::fraction_of(p, "reading"),
                );
                Ok(Outcome::DatasetLook(Box::new(look)))
            });
    }

    /// Starts training with the form's settings on the app's GPU.
    pub fn start_training(&mut self) {
        if self.training.as_ref().is_some_and(|t| t.is_running()) {
            return;
        }
        let job = match self.train_form.job() {
            Ok(j) => j,
            Err(e) => {
                self.report_error(format!("Cannot start training: {e}."));
                return;
            }
        };
        let ctx = match self.compute() {
            Ok(c) => c.clone(),
            Err(e) => {
                self.report_error(format!("Cannot train on this GPU: {e}"));
                return;
            }
        };
        let wake = wake(&self.ctx_slot);
        match TrainingRun::start(job, ctx, wake) {
            Ok(run) => {
                self.training = Some(run);
                self.info("Training started");
            }
            Err(e) => self.error(format!("Training could not start: {e}")),
        }
    }

    pub(crate) fn train_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Training");
        let running = self.training.as_ref().is_some_and(|t| t.is_running());
        ui.add_enabled_ui(!running, |ui| self.train_form_ui(ui));
        ui.separator();
        ui.horizontal(|ui| {
            if !running {
                if ui.button("Start training").clicked() {
                    self.start_training();
                }
            } else if let Some(t) = &self.training {
                let paused = t.is_paused();
                if ui
                    .add_enabled(!t.is_stopping(), egui::Button::new(if paused { "Resume" } else { "Pause" }))
                    .clicked()
                {
                    t.set_paused(!paused);
                }
                let stop = ui
                    .add_enabled(!t.is_stopping(), egui::Button::new("Stop"))
                    .on_hover_text("Stops after the current step and saves; continue later with 'Continue the run in the output folder'.");
                if stop.clicked() {
                    t.stop();
                }
            }
        });
        self.refresh_train_previews(ui.ctx());
        let Some(run) = &self.training else {
            return;
        };
        // Drawn under the lock (no copy of every step each frame); the training thread only
        // waits for it between steps.
        let live = run.live.lock().unwrap_or_else(|p| p.into_inner());
        self.train_status_ui(ui, run, &live);
        train_curves(ui, &live);
        if let (Some((epoch, textures)), Some(p)) = (&self.train_previews, &live.previews) {
            ui.label(format!(
                "Validation images after epoch {epoch}: prediction in red, reference outline in green"
            ));
            ui.horizontal_wrapped(|ui| {
                for (t, d) in textures.iter().zip(&p.dsc) {
                    ui.vertical(|ui| {
                        ui.add(egui::Image::new(t).fit_to_exact_size(egui::vec2(112.0, 112.0)));
                        ui.small(format!("DSC {d:.2}"));
                    });
                }
            });
        }
        let mut use_model = None;
        if let Some(best) = &live.best {
            let label = if live.finished.is_some() {
                "Use this model"
            } else {
                "Use the best model so far"
            };
            if ui
                .button(label)
                .on_hover_text(best.display().to_string())
                .clicked()
            {
                use_model = Some(best.clone());
            }
        }
        egui::CollapsingHeader::new("Log")
            .default_open(false)
            .show(ui, |ui| {
                for line in live.log.iter().rev().take(40).rev() {
                    ui.monospace(line);
                }
            });
        drop(live);
        if let Some(best) = use_model {
            self.open_model(best);
        }
    }

    fn train_form_ui(&mut self, ui: &mut egui::Ui) {
        let f = &mut self.train_form;
        let mut pick: Option<(TrainField, bool)> = None;
        let mut look_again = false;
        egui::Grid::new("train_form").num_columns(2).show(ui, |ui| {
            ui.label("Dataset");
            ui.horizontal(|ui| {
                ui.add(
                    egui::TextEdit::singleline(&mut f.data)
                        .desired_width(150.0)
                        .hint_text("images/ + masks/"),
                );
                if ui.button("Choose...").clicked() {
                    pick = Some((TrainField::Data, true));
                }
            });
            ui.end_row();
            ui.label("Network");
            egui::ComboBox::from_id_salt("train_model")
                .selected_text(MODELS[f.model].1)
                .show_ui(ui, |ui| {
                    for (i, (_, label)) in MODELS.iter().enumerate() {
                        ui.selectable_value(&mut f.model, i, *label);
                    }
                });
            ui.end_row();
            if MODELS[f.model].0 != "usema" {
                ui.label("Width");
                ui.horizontal(|ui| {
                    for w in [32, 64, 96] {
                        ui.selectable_value(&mut f.width, w, w.to_string());
                    }
                });
                ui.end_row();
            }
            ui.label("Input size");
            ui.add(egui::DragValue::new(&mut f.size).range(32..=1024).speed(32));
            ui.end_row();
            ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut f.epochs).range(1..=10000));
            ui.end_row();
            ui.label("Batch");
            ui.add(egui::DragValue::new(&mut f.batch).range(1..=256));
            ui.end_row();
            ui.label("Learning rate");
            ui.add(
                egui::DragValue::new(&mut f.lr)
                    .range(1e-6..=1e-1)
                    .speed(1e-5)
                    .max_decimals(6),
            );
            ui.end_row();
            ui.label("Validation");
            ui.horizontal(|ui| {
                ui.add_enabled(
                    f.split.trim().is_empty(),
                    egui::Slider::new(&mut f.val_fraction, 0.0..=0.5).text("share"),
                );
                if ui.button("Split file...").clicked() {
                    pick = Some((TrainField::Split, false));
                }
            });
            ui.end_row();
            ui.label("Masks");
            let toggled = ui
                .checkbox(&mut f.instances, "instance label maps (cells)")
                .on_hover_text(
                    "One id per object: the network learns interior and boundary on tiles, \
                     validation scores cell F1, Segment gives instances",
                );
            // Instance maps are looked for in labels/ and may hold any number of ids.
            look_again = toggled.changed() && !f.data.trim().is_empty();
            ui.end_row();
            ui.label("Class names");
            ui.add_enabled(
                !f.instances,
                egui::TextEdit::singleline(&mut f.class_names)
                    .desired_width(150.0)
                    .hint_text("e.g. polyp"),
            );
            ui.end_row();
            ui.label("Start");
            ui.vertical(|ui| {
                ui.radio_value(&mut f.start, Start::Scratch, "from scratch");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut f.start, Start::Weights, "from weights");
                    if f.start == Start::Weights && ui.button("Choose...").clicked() {
                        pick = Some((TrainField::Init, false));
                    }
                });
                if f.start == Start::Weights {
                    ui.add(
                        egui::TextEdit::singleline(&mut f.init)
                            .desired_width(150.0)
                            .hint_text(".json / .safetensors / .pth"),
                    );
                }
                ui.radio_value(
                    &mut f.start,
                    Start::Resume,
                    "continue the run in the output folder",
                );
            });
            ui.end_row();
            ui.label("Output folder");
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut f.out).desired_width(150.0));
                if ui.button("Choose...").clicked() {
                    pick = Some((TrainField::Out, true));
                }
            });
            ui.end_row();
        });
        if look_again {
            self.look_at_dataset();
        }
        if let Some((field, folder)) = pick {
            self.pick(
                move |p| Picked::Train(field, p),
                FileDialog::new(),
                false,
                folder,
            );
        }
        if let Some(look) = &self.train_look {
            match &look.result {
                Ok((d, s)) => {
                    ui.label(format!(
                        "{} pairs; {} images without a mask, {} masks without an image, {} other files",
                        d.pairs.len(),
                        d.images_without_mask.len(),
                        d.masks_without_image.len(),
                        d.ignored.len()
                    ));
                    if s.looked_at > 0 {
                        ui.label(format!(
                            "first {}: {}x{} to {}x{} px, {} channel(s), label values {:?}{}",
                            s.looked_at,
                            s.min_dims[0],
                            s.min_dims[1],
                            s.max_dims[0],
                            s.max_dims[1],
                            s.channels
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join("/"),
                            s.labels,
                            if s.unreadable.is_empty() {
                                String::new()
                            } else {
                                format!("; {} unreadable", s.unreadable.len())
                            }
                        ));
                    }
                }
                Err(e) => {
                    ui.colored_label(Color32::from_rgb(230, 110, 90), e);
                }
            }
        }
    }

    /// Uploads the validation previews as textures when an epoch brought new ones.
    fn refresh_train_previews(&mut self, ctx: &egui::Context) {
        let Some(run) = &self.training else {
            self.train_previews = None;
            return;
        };
        let live = run.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = &live.previews else {
            return;
        };
        if self
            .train_previews
            .as_ref()
            .is_some_and(|(e, _)| *e == p.epoch)
        {
            return;
        }
        let textures = p
            .rgba
            .iter()
            .enumerate()
            .map(|(i, px)| {
                ctx.load_texture(
                    format!("training-preview-{i}"),
                    egui::ColorImage::from_rgba_unmultiplied([p.side, p.side], px),
                    egui::TextureOptions::LINEAR,
                )
            })
            .collect();
        let epoch = p.epoch;
        drop(live);
        self.train_previews = Some((epoch, textures));
    }

    fn train_status_ui(&self, ui: &mut egui::Ui, run: &TrainingRun, live: &Live) {
        match &live.finished {
            Some(Ok(s)) => {
                let how = if s.cancelled {
                    "Stopped (saved)"
                } else {
                    "Finished"
                };
                ui.label(match (s.best_epoch, s.best_val_dsc) {
                    (Some(e), Some(d)) => format!("{how}: best validation DSC {d:.4} at epoch {e}"),
                    _ => how.to_string(),
                });
            }
            Some(Err(e)) => {
                ui.colored_label(Color32::from_rgb(230, 110, 90), e);
            }
            None => {
                let done_epochs = live.epochs.last().map(|e| e.epoch).unwrap_or(0);
                ui.label(format!(
                    "{}{}",
                    if run.is_paused() { "Paused - " } else { "" },
                    if live.stage.is_empty() {
                        "starting".to_string()
                    } else {
                        live.stage.clone()
                    }
                ));
                if let Some(f) = live.fraction {
                    ui.add(egui::ProgressBar::new(f).show_percentage());
                }
                let mut parts = vec![format!(
                    "{done_epochs} of {} epochs done",
                    live.total_epochs
                )];
                if let Some(e) = live.epochs.last() {
                    parts.push(format!("lr {:.2e}", e.lr));
                }
                if let Some(v) = live.images_per_s {
                    parts.push(format!("{v:.1} img/s"));
                }
                if let Some(s) = live.eta(run.started.elapsed().as_secs_f64()) {
                    parts.push(format!("about {} left", minutes(s)));
                }
                ui.label(parts.join(", "));
            }
        }
        if let Some(g) = live.pool_gib {
            ui.label(format!("GPU memory held by training: {g:.2} GiB"));
        }
    }
}

fn minutes(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// Loss per step (grey points, left scale) and validation DSC per epoch (yellow, 0 to 1 on the
/// right scale) against epochs.
fn train_curves(ui: &mut egui::Ui, live: &Live) {
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), 160.0),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, Color32::from_gray(20));
    let plot = rect.shrink2(egui::vec2(34.0, 14.0));
    let x_max = live.total_epochs.max(1) as f64;
    let loss_max = live.steps.iter().map(|s| s.1).fold(0.0, f64::max).max(1e-6) * 1.05;
    let to = |x: f64, y: f64, y_max: f64| {
        Pos2::new(
            plot.left() + (x / x_max) as f32 * plot.width(),
            plot.bottom() - (y / y_max).clamp(0.0, 1.0) as f32 * plot.height(),
        )
    };
    let font = egui::FontId::proportional(10.0);
    let text = Color32::from_gray(170);
    painter.text(
        plot.left_top() - egui::vec2(30.0, 6.0),
        egui::Align2::LEFT_TOP,
        format!("{loss_max:.2}"),
        font.clone(),
        text,
    );
    painter.text(
        plot.left_bottom() - egui::vec2(30.0, 6.0),
        egui::Align2::LEFT_TOP,
        "loss",
        font.clone(),
        text,
    );
    painter.text(
        plot.right_top() + egui::vec2(4.0, -6.0),
        egui::Align2::LEFT_TOP,
        "1.0",
        font.clone(),
        Color32::YELLOW,
    );
    painter.text(
        plot.right_bottom() + egui::vec2(4.0, -6.0),
        egui::Align2::LEFT_TOP,
        "DSC",
        font.clone(),
        Color32::YELLOW,
    );
    painter.text(
        rect.center_bottom() - egui::vec2(0.0, 12.0),
        egui::Align2::CENTER_TOP,
        format!("epochs (of {})", live.total_epochs),
        font,
        text,
    );
    painter.line_segment(
        [plot.left_bottom(), plot.right_bottom()],
        Stroke::new(1.0, Color32::from_gray(60)),
    );
    // Thin the step points to at most two per pixel column.
    let every = (live.steps.len() / (2 * plot.width().max(1.0) as usize)).max(1);
    for (x, l) in live.steps.iter().step_by(every) {
        painter.circle_filled(to(*x, *l, loss_max), 1.2, Color32::from_gray(150));
    }
    let dsc: Vec<Pos2> = live
        .epochs
        .iter()
        .filter_map(|e| e.val_dsc.map(|d| to(e.epoch as f64, d, 1.0)))
        .collect();
    if dsc.len() > 1 {
        painter.add(egui::Shape::line(
            dsc.clone(),
            Stroke::new(1.5, Color32::YELLOW),
        ));
    }
    for p in dsc {
        painter.circle_filled(p, 2.5, Color32::YELLOW);
    }
}
