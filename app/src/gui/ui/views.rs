//! The image views: one plane for 2-D images, three for volumes, with zoom, pan, scrolling, the crosshair and painting.

use crate::gui::app::*;
use crate::gui::document::{Plane, Stroke, ViewMapping, Window};
use crate::gui::render::ViewUniforms;
use egui::{Color32, Key, PointerButton, Pos2, Rect, Sense, Stroke as Line, Vec2};

impl MedsegApp {
    pub(crate) fn views_ui(&mut self, ui: &mut egui::Ui) {
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

    pub(crate) fn view_ui(&mut self, ui: &mut egui::Ui, slot: usize, plane: Plane, rect: Rect) {
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
                let axes = crate::gui::document::plane_axes(&doc.image, plane);
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
}
