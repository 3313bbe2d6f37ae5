//! The Training panel on the app's own device (lavapipe in CI): a tiny VM-UNet on 8 polyp
//! images starts from the panel's button, loss points appear, Pause holds it, Resume and Stop
//! (which saves), and the saved checkpoint loads and segments.

use crate::harness::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use medseg::gui::MedsegApp;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Steps the harness until `done` holds (or fails after `secs`).
fn until(
    h: &mut Harness<'static, MedsegApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&MedsegApp) -> bool,
) {
    let t0 = Instant::now();
    while !done(h.state()) {
        h.step();
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn steps_seen(app: &MedsegApp) -> usize {
    app.training
        .as_ref()
        .map(|t| t.live.lock().unwrap().steps.len())
        .unwrap_or(0)
}

#[test]
fn train_from_the_panel_pause_resume_stop_then_segment() {
    let Some(mut h) = app_harness_compute([1400.0, 900.0]) else {
        return;
    };
    let root = std::env::temp_dir().join(format!("medseg-train-panel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    tiny_polyp(&root.join("data"), 8);
    {
        let app = h.state_mut();
        app.training_open = true;
        let f = &mut app.train_form;
        f.data = root.join("data").display().to_string();
        f.out = root.join("run").display().to_string();
        f.model = 2; // VM-UNet
        f.width = 32;
        f.size = 64;
        f.epochs = 50;
        f.batch = 2;
        f.val_fraction = 0.25;
        f.class_names = "polyp".into();
        app.look_at_dataset();
    }
    until(&mut h, 60, "the dataset survey", |a| a.train_look.is_some());
    let look = h.state().train_look.clone().unwrap();
    let (d, s) = look.result.expect("the tiny dataset reads");
    assert_eq!((d.pairs.len(), s.looked_at), (8, 8));
    assert_eq!(s.labels.iter().copied().collect::<Vec<_>>(), vec![0, 1]);

    h.get_by_label("Start training").click();
    h.run_steps(2);
    assert!(
        h.state().training.is_some(),
        "{:?}",
        h.state().error_message()
    );
    until(&mut h, 900, "the first loss points", |a| steps_seen(a) >= 2);

    // Pause: no more steps while paused (at most the one in flight finishes).
    h.get_by_label("Pause").click();
    h.run_steps(2);
    std::thread::sleep(Duration::from_millis(500));
    h.step();
    let paused_at = steps_seen(h.state());
    std::thread::sleep(Duration::from_secs(3));
    h.step();
    assert_eq!(steps_seen(h.state()), paused_at, "steps ran while paused");

    h.get_by_label("Resume").click();
    until(&mut h, 600, "an epoch after resuming", |a| {
        a.training
            .as_ref()
            .unwrap()
            .live
            .lock()
            .unwrap()
            .epochs
            .len()
            >= 2
    });
    // The validation previews: both validation images (a quarter of 8), shown as textures.
    h.run_steps(2);
    {
        let app = h.state();
        let live = app.training.as_ref().unwrap().live.lock().unwrap();
        let p = live.previews.as_ref().expect("previews after an epoch");
        assert_eq!((p.rgba.len(), p.side), (2, 64));
        assert!(p.rgba.iter().all(|px| px.len() == 64 * 64 * 4));
        assert!(p.dsc.iter().all(|d| (0.0..=1.0).contains(d)));
        let (epoch, textures) = app.train_previews.as_ref().expect("preview textures");
        assert_eq!((*epoch, textures.len()), (p.epoch, 2));
    }
    // MEDSEG_SCREENSHOT_DIR=docs keeps a picture of the panel mid-run (the README's).
    if let Some(dir) = std::env::var_os("MEDSEG_SCREENSHOT_DIR") {
        h.run_steps(3);
        let img = h.render().expect("render mid-training");
        img.save(PathBuf::from(dir).join("training.png")).unwrap();
    }
    h.get_by_label("Stop").click();
    until(&mut h, 600, "the run to stop", |a| {
        !a.training.as_ref().unwrap().is_running()
    });
    let live = h
        .state()
        .training
        .as_ref()
        .unwrap()
        .live
        .lock()
        .unwrap()
        .clone();
    let summary = live.finished.expect("finished").expect("stopped cleanly");
    assert!(summary.cancelled, "Stop ends the run as stopped");
    assert!(summary.epochs.len() >= 2 && summary.epochs.len() < 50);
    assert!(summary.step_losses.iter().all(|l| l.is_finite()));
    let run = root.join("run");
    for f in [
        "state.json",
        "best.json",
        "last.json",
        "log.jsonl",
        "report.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing after Stop");
    }
    // The log has every step the run reported.
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let steps = log
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count();
    assert_eq!(steps, summary.step_losses.len());

    // "Use this model": it becomes Segment's model and segments the polyp sample.
    h.step();
    h.get_by_label("Use this model").click();
    until(&mut h, 300, "the model to load", |a| a.tasks.is_idle());
    assert!(
        h.state().error_message().is_none(),
        "{:?}",
        h.state().error_message()
    );
    h.state_mut().open_sample(2);
    until(&mut h, 120, "the sample", |a| a.tasks.is_idle());
    h.state_mut().segment();
    until(&mut h, 600, "segmenting", |a| a.tasks.is_idle());
    let app = h.state();
    assert!(app.error_message().is_none(), "{:?}", app.error_message());
    let doc = app.doc.as_ref().unwrap();
    let review = doc
        .proposal
        .as_ref()
        .expect("a proposal from the trained model");
    assert!(review.model.contains("polyp"), "{}", review.model);
    let _ = std::fs::remove_dir_all(&root);
}

/// A preview of a hand-made 4×4 sample: the prediction tinted red, the reference outline green,
/// the rest as it was, and the DSC of the two.
#[test]
fn validation_previews_tint_the_prediction_and_outline_the_reference() {
    use medseg::gui::training::Previews;
    use medseg_data::preprocess::Sample;
    let sample = Sample {
        width: 4,
        height: 4,
        channels: 3,
        image: vec![100.0; 4 * 4 * 3],
        // Reference: the left half (columns 0 and 1).
        mask: (0..16).map(|i| ((i % 4) < 2) as u8 as f32).collect(),
    };
    // Prediction: the top half (rows 0 and 1).
    let predicted: Vec<f32> = (0..16).map(|i| if i / 4 < 2 { 0.9 } else { 0.1 }).collect();
    let p = Previews::compose(3, &[sample], &[predicted]);
    assert_eq!((p.epoch, p.side, p.rgba.len()), (3, 4, 1));
    // TP 4 (top-left quarter), FP 4, FN 4: DSC 8 / 16.
    assert!((p.dsc[0] - 0.5).abs() < 1e-12);
    let px = |x: usize, y: usize| &p.rgba[0][(y * 4 + x) * 4..(y * 4 + x) * 4 + 4];
    // Every reference pixel lies on its outline (the region is two wide): green.
    assert_eq!(px(0, 3), &[60, 230, 90, 255]);
    assert_eq!(px(1, 0), &[60, 230, 90, 255]);
    // Predicted only: tinted red (0.55 · 100 + 0.45 · 255 = 169.75 → 170; 0.55 · 100 + 18 = 73).
    assert_eq!(px(3, 0), &[170, 73, 73, 255]);
    // Neither: unchanged.
    assert_eq!(px(3, 3), &[100, 100, 100, 255]);
}
