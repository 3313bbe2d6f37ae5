//! Open, window/level, scroll, paint, undo/redo and export through the real UI, checking pixels.

use crate::harness::*;
use egui::{Event, Key, Modifiers, MouseWheelUnit, PointerButton, Pos2, Vec2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use medseg::gui::document::{Plane, CT_PRESETS};
use medseg::gui::MedsegApp;

/// Compares the drawn pixels of `plane` at voxel centres on a grid against the windowed
/// intensity (voxels without a label, or all when labels are hidden). Returns how many matched.
fn check_grey(h: &mut Harness<'static, MedsegApp>, plane: Plane) -> usize {
    let img = h.render().expect("render");
    let m = mapping(h, plane);
    let widget = h.state().drawn[&plane].widget;
    let doc = h.state().doc.as_ref().unwrap();
    let (level, width) = (doc.window.level, doc.window.width);
    let mut checked = 0;
    let (u, v, n) = (m.axes.u, m.axes.v, m.axes.n);
    for j in (1..m.dims[v] - 1).step_by(3) {
        for i in (1..m.dims[u] - 1).step_by(3) {
            let mut vox = [0usize; 3];
            vox[u] = i;
            vox[v] = j;
            vox[n] = m.slice;
            if doc.show_labels && doc.label_at(vox) != 0 {
                continue;
            }
            // Not under the crosshair or the letters and slice number along the edges.
            let p = screen_of(&m, vox);
            let on_cross = !doc.is_2d() && (vox[u] == doc.cursor[u] || vox[v] == doc.cursor[v]);
            if on_cross || !widget.shrink(28.0).contains(p) {
                continue;
            }
            let value = doc.value_at(vox);
            let want: Vec<f32> = value.iter().map(|&x| windowed(x, level, width)).collect();
            let want = if want.len() == 3 {
                [want[0], want[1], want[2]]
            } else {
                [want[0]; 3]
            };
            let got = pixel(&img, p);
            if !close(got, want, 2.0) {
                let _ = img.save(std::env::temp_dir().join("medseg-check-grey-failed.png"));
            }
            assert!(
                close(got, want, 2.0),
                "{plane:?} voxel {vox:?} value {value:?} window {level}/{width}: drew {got:?}, expected {want:?}"
            );
            checked += 1;
        }
    }
    checked
}

fn wheel(h: &Harness<'static, MedsegApp>, at: Pos2, lines: f32) {
    h.hover_at(at);
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: Vec2::new(0.0, lines),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::NONE,
    });
}

fn drag(h: &mut Harness<'static, MedsegApp>, button: PointerButton, path: &[Pos2]) {
    h.hover_at(path[0]);
    h.step();
    h.event(Event::PointerButton {
        pos: path[0],
        button,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.step();
    for p in &path[1..] {
        h.event(Event::PointerMoved(*p));
        h.step();
    }
    h.event(Event::PointerButton {
        pos: *path.last().unwrap(),
        button,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.step();
    h.step();
}

#[test]
fn ct_sample_window_level_scroll_paint_undo_export() {
    let Some(mut h) = with_sample(app_harness([1200.0, 860.0]), 0) else {
        return;
    };
    {
        let doc = h.state().doc.as_ref().expect("the sample opened");
        assert_eq!(doc.dims(), [122, 101, 30]);
        assert!(doc.ct, "the sample is a CT");
        assert_eq!(
            doc.window, CT_PRESETS[0].1,
            "CT opens in the abdomen window"
        );
        assert!(
            doc.present_labels().len() >= 10,
            "{:?}",
            doc.present_labels()
        );
        assert!(!doc.unsaved);
    }
    // Three planes, each drawn with the abdomen window.
    for plane in Plane::ALL {
        assert!(check_grey(&mut h, plane) > 100, "{plane:?}");
    }

    // Window/level: the Bone preset, then a right-drag (wider window to the right, level down).
    h.get_by_label("Bone").click();
    h.run_steps(2);
    assert_eq!(h.state().doc.as_ref().unwrap().window, CT_PRESETS[2].1);
    assert!(check_grey(&mut h, Plane::Axial) > 100);
    let m = mapping(&h, Plane::Axial);
    let c = screen_of(&m, [61, 50, m.slice]);
    drag(
        &mut h,
        PointerButton::Secondary,
        &[c, c + Vec2::new(40.0, 0.0), c + Vec2::new(80.0, 30.0)],
    );
    let w = h.state().doc.as_ref().unwrap().window;
    assert!(w.width > CT_PRESETS[2].1.width + 1.0, "{w:?}");
    assert!(w.level < CT_PRESETS[2].1.level - 1.0, "{w:?}");
    assert!(check_grey(&mut h, Plane::Axial) > 100);

    // Scroll the axial plane three slices; the pixels follow the new slice.
    let before = h.state().doc.as_ref().unwrap().cursor[2];
    for _ in 0..3 {
        wheel(&h, c, 1.0);
        h.step();
    }
    h.run_steps(2);
    let after = h.state().doc.as_ref().unwrap().cursor[2];
    assert_eq!(
        (after as i64 - before as i64).abs(),
        3,
        "{before} → {after}"
    );
    assert_eq!(mapping(&h, Plane::Axial).slice, after);
    assert!(check_grey(&mut h, Plane::Axial) > 100);

    // Paint a new label with the brush along a short stroke in the axial plane.
    h.get_by_label("New label").click();
    h.run_steps(2);
    let label = h.state().active_label;
    assert_eq!(label, 14, "13 organs, so the new label is 14");
    h.get_by_label("Brush").click();
    h.state_mut().brush_radius_mm = 6.0;
    h.run_steps(2);
    let labels_before = h.state().doc.as_ref().unwrap().labels.labels.clone();
    let m = mapping(&h, Plane::Axial);
    let a = screen_of(&m, [40, 50, m.slice]);
    let b = screen_of(&m, [60, 50, m.slice]);
    let path: Vec<Pos2> = (0..=8).map(|k| a + (b - a) * (k as f32 / 8.0)).collect();
    drag(&mut h, PointerButton::Primary, &path);
    let slice = m.slice;
    {
        let doc = h.state().doc.as_ref().unwrap();
        let painted = doc.count(label);
        assert!(painted > 20, "painted {painted} voxels");
        assert!(doc.unsaved);
        // Every painted voxel lies on the slice within the radius of the stroke's segment
        // (voxels are 3 mm: radius 6 mm = 2 voxels, plus half a voxel of pointer rounding).
        for (i, &l) in doc.labels.labels.iter().enumerate() {
            if l != label {
                continue;
            }
            let (x, y, z) = (i % 122, (i / 122) % 101, i / (122 * 101));
            assert_eq!(z, slice);
            let dx = 40usize.saturating_sub(x) + x.saturating_sub(60);
            let dy = (y as i64 - 50).unsigned_abs() as usize;
            assert!(
                dx * dx + dy * dy <= 9,
                "voxel ({x}, {y}) is outside the stroke"
            );
        }
        assert_eq!(doc.label_at([45, 51, slice]), label);
    }
    // A painted voxel (off the crosshair row y = 50) shows the label colour over the grey at
    // 50 % opacity.
    let img = h.render().unwrap();
    let doc = h.state().doc.as_ref().unwrap();
    let colour = doc
        .label_info
        .iter()
        .find(|l| l.id == label)
        .unwrap()
        .colour;
    let grey = windowed(
        doc.value_at([45, 51, slice])[0],
        doc.window.level,
        doc.window.width,
    );
    let want = [0, 1, 2].map(|k| 0.5 * grey + 0.5 * colour[k] as f32);
    let got = pixel(&img, screen_of(&m, [45, 51, slice]));
    assert!(
        close(got, want, 3.0),
        "overlay drew {got:?}, expected {want:?}"
    );

    // Undo takes the whole stroke back; redo applies it again.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().doc.as_ref().unwrap().labels.labels, labels_before);
    assert_eq!(h.state().doc.as_ref().unwrap().count(label), 0);
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.run_steps(2);
    assert!(h.state().doc.as_ref().unwrap().count(label) > 20);

    // Export as NIfTI: the file holds our labels on the image's grid.
    let dir = tempdir();
    let out = dir.join("ct_labels.nii.gz");
    export(&mut h, &out);
    let back = medseg_data::load_labels(&out).expect("reading the export back");
    let doc = h.state().doc.as_ref().unwrap();
    assert_eq!(back.labels, doc.labels.labels);
    assert!(back.geometry.matches(&doc.image.geometry, 1e-4));
    assert!(!doc.unsaved, "exported edits are saved");

    // Exporting again to the same name asks before replacing.
    h.state_mut().export_labels(out.clone(), false);
    h.run_steps(2);
    assert_eq!(h.state().asks_to_replace(), Some(out.as_path()));
    h.get_by_label("Replace").click();
    settle(&mut h);
    assert!(h.state().asks_to_replace().is_none());
    assert!(h.state().error_message().is_none());
}

#[test]
fn dermoscopy_sample_rgb_png_export_and_refusals() {
    let Some(mut h) = with_sample(app_harness([1000.0, 760.0]), 1) else {
        return;
    };
    assert_eq!(h.state().doc.as_ref().unwrap().dims(), [600, 450, 1]);
    assert_eq!(h.state().drawn.len(), 1, "a 2-D image is one view");
    h.state_mut().doc.as_mut().unwrap().show_labels = false;
    h.run_steps(2);
    assert!(check_grey(&mut h, Plane::Axial) > 1000);
    // The lesion mask is drawn filled in label 1's colour.
    h.state_mut().doc.as_mut().unwrap().show_labels = true;
    h.run_steps(2);
    assert!(check_grey(&mut h, Plane::Axial) > 500);
    let lesion = h.state().doc.as_ref().unwrap().count(1);
    assert!(lesion > 1000, "{lesion}");

    // A label map of another grid is refused, with the labels left as they were.
    let before = h.state().doc.as_ref().unwrap().labels.labels.clone();
    h.state_mut()
        .open_labels(assets().join("ct_abdomen_labels.nii.gz"));
    settle(&mut h);
    let e = h
        .state()
        .error_message()
        .expect("an error is shown")
        .to_string();
    assert!(e.contains("does not match"), "{e}");
    assert_eq!(h.state().doc.as_ref().unwrap().labels.labels, before);
    h.get_by_label("OK").click();
    h.run_steps(2);

    // A file that is not an image: an error naming it, no panic.
    let dir = tempdir();
    let bad = dir.join("broken.nii.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00 not really gzip").unwrap();
    h.state_mut().open_image(bad.clone());
    settle(&mut h);
    let e = h
        .state()
        .error_message()
        .expect("an error is shown")
        .to_string();
    assert!(e.contains("broken.nii.gz"), "{e}");
    assert_eq!(
        h.state().doc.as_ref().unwrap().dims(),
        [600, 450, 1],
        "the image stays open"
    );
    h.get_by_label("OK").click();
    h.run_steps(2);

    // Export as PNG (0/255) and read back; a volume-only name is refused for .txt.
    let out = dir.join("lesion.png");
    export(&mut h, &out);
    let back = medseg_data::load_labels(&out).unwrap();
    assert_eq!(back.labels, h.state().doc.as_ref().unwrap().labels.labels);
    h.state_mut().export_labels(dir.join("lesion.txt"), false);
    h.run_steps(2);
    assert!(h.state().error_message().unwrap().contains(".nii.gz"));
}

#[test]
fn closing_with_unsaved_edits_asks_first() {
    let Some(mut h) = with_sample(app_harness([900.0, 700.0]), 1) else {
        return;
    };
    h.state_mut().doc.as_mut().unwrap().clear_label(1);
    assert!(h.state().doc.as_ref().unwrap().unsaved);
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    h.run_steps(2);
    h.get_by_label("Discard and quit");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(h.state().is_idle(), "the dialog closed; the document stays");
    assert!(h.state().doc.as_ref().unwrap().unsaved);
}

/// Exports the labels to `out` and checks no error was shown.
fn export(h: &mut Harness<'static, MedsegApp>, out: &std::path::Path) {
    h.state_mut().export_labels(out.to_path_buf(), false);
    settle(h);
    assert!(
        h.state().error_message().is_none(),
        "{:?}",
        h.state().error_message()
    );
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "medseg-app-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A voxel of `label` on the plane's slice whose 5×5 in-plane neighbourhood has the same label.
fn interior_voxel(h: &Harness<'static, MedsegApp>, plane: Plane, label: u16) -> [usize; 3] {
    let m = mapping(h, plane);
    let doc = h.state().doc.as_ref().unwrap();
    let (u, v, n) = (m.axes.u, m.axes.v, m.axes.n);
    for j in 3..m.dims[v] - 3 {
        for i in 3..m.dims[u] - 3 {
            let at = |di: i64, dj: i64| {
                let mut x = [0usize; 3];
                x[u] = (i as i64 + di) as usize;
                x[v] = (j as i64 + dj) as usize;
                x[n] = m.slice;
                x
            };
            let c = at(0, 0);
            if c[u] == doc.cursor[u] || c[v] == doc.cursor[v] {
                continue;
            }
            if (-2..=2).all(|a| (-2..=2).all(|b| doc.label_at(at(a, b)) == label)) {
                return c;
            }
        }
    }
    panic!("no interior voxel of label {label} on this slice");
}

#[test]
fn zoom_maximise_outline_visibility_and_eraser() {
    let Some(mut h) = with_sample(app_harness([1200.0, 860.0]), 0) else {
        return;
    };
    let liver = 6;

    // Ctrl+wheel zooms about the pointer; the slice is still drawn right.
    let before = mapping(&h, Plane::Axial).image_rect;
    let centre = h.state().drawn[&Plane::Axial].widget.center();
    h.hover_at(centre);
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: Vec2::new(0.0, 2.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::COMMAND,
    });
    h.run_steps(2);
    let after = mapping(&h, Plane::Axial).image_rect;
    let ratio = (after[2] - after[0]) / (before[2] - before[0]);
    assert!((ratio - 1.15f32.powi(2)).abs() < 1e-3, "zoom ratio {ratio}");
    assert!(check_grey(&mut h, Plane::Axial) > 100);

    // Double-click maximises a plane and restores the three.
    let c = h.state().drawn[&Plane::Coronal].widget.center();
    h.hover_at(c);
    h.step();
    for _ in 0..2 {
        for pressed in [true, false] {
            h.event(Event::PointerButton {
                pos: c,
                button: PointerButton::Primary,
                pressed,
                modifiers: Modifiers::NONE,
            });
            h.step();
        }
    }
    h.run_steps(2);
    assert_eq!(h.state().maximised, Some(Plane::Coronal));
    assert_eq!(h.state().drawn.len(), 1);
    assert!(check_grey(&mut h, Plane::Coronal) > 200);
    h.state_mut().maximised = None;
    h.run_steps(2);
    assert_eq!(h.state().drawn.len(), 3);

    // Outline mode: the inside of an organ is plain grey, its edge is the label colour.
    h.get_by_label("Outline only").click();
    h.run_steps(2);
    let inner = interior_voxel(&h, Plane::Axial, liver);
    let img = h.render().unwrap();
    let m = mapping(&h, Plane::Axial);
    let doc = h.state().doc.as_ref().unwrap();
    let grey = windowed(doc.value_at(inner)[0], doc.window.level, doc.window.width);
    let got = pixel(&img, screen_of(&m, inner));
    assert!(
        close(got, [grey; 3], 2.0),
        "outline mode filled the inside: {got:?}"
    );
    let colour = doc
        .label_info
        .iter()
        .find(|l| l.id == liver)
        .unwrap()
        .colour;
    let c = colour.map(|x| x as f32);
    let w = h.state().drawn[&Plane::Axial].widget;
    let edge_pixels = img
        .enumerate_pixels()
        .filter(|(x, y, _)| w.contains(egui::pos2(*x as f32, *y as f32)))
        .filter(|(_, _, p)| close([p[0], p[1], p[2]], c, 1.0))
        .count();
    assert!(
        edge_pixels > 100,
        "only {edge_pixels} outline pixels of the liver"
    );
    h.get_by_label("Outline only").click();
    h.run_steps(2);

    // A hidden label is not drawn.
    {
        let doc = h.state_mut().doc.as_mut().unwrap();
        doc.label_info
            .iter_mut()
            .find(|l| l.id == liver)
            .unwrap()
            .visible = false;
        doc.style_revision += 1;
    }
    h.run_steps(2);
    let img = h.render().unwrap();
    let got = pixel(&img, screen_of(&m, inner));
    assert!(close(got, [grey; 3], 2.0), "hidden label drawn: {got:?}");

    // The eraser (key E) clears labels under a stroke; undo restores them.
    let liver_before = h.state().doc.as_ref().unwrap().count(liver);
    h.key_press(Key::E);
    h.run_steps(1);
    assert_eq!(h.state().tool, medseg::gui::app::Tool::Eraser);
    let p = screen_of(&m, inner);
    drag(
        &mut h,
        PointerButton::Primary,
        &[p, p + Vec2::new(2.0, 0.0)],
    );
    let doc = h.state().doc.as_ref().unwrap();
    assert!(
        doc.count(liver) < liver_before,
        "the eraser removed nothing"
    );
    assert_eq!(doc.label_at(inner), 0);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().doc.as_ref().unwrap().count(liver), liver_before);
}

#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(h: &mut Harness<'static, MedsegApp>, path: std::path::PathBuf) {
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(path)));
    h.step();
    settle(h);
}

#[test]
fn dropped_files_open_the_image_then_its_labels() {
    let Some(mut h) = app_harness([1000.0, 760.0]) else {
        return;
    };
    drop_file(&mut h, assets().join("ct_abdomen.nii.gz"));
    assert_eq!(h.state().doc.as_ref().unwrap().dims(), [122, 101, 30]);
    assert!(h.state().doc.as_ref().unwrap().present_labels().is_empty());
    // A file named like a label map goes over the open image.
    drop_file(&mut h, assets().join("ct_abdomen_labels.nii.gz"));
    let doc = h.state().doc.as_ref().unwrap();
    let want = medseg_data::load_labels(&assets().join("ct_abdomen_labels.nii.gz")).unwrap();
    assert_eq!(doc.labels.labels, want.labels);
    assert!(!doc.unsaved, "labels as loaded are not an unsaved edit");
    // Undo takes the loaded labels back off (one step).
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert!(h.state().doc.as_ref().unwrap().present_labels().is_empty());
}
