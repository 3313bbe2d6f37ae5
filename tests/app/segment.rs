//! Segment in the app and `medseg predict`'s job on the app's own wgpu device (lavapipe in CI),
//! with a compact SA-UMamba checkpoint written by the test (official initialisation, the same
//! files `medseg train` writes): the proposal, its threshold, Accept as one undo step, Cancel,
//! the same mask as predict, and predict's file handling.

use crate::harness::*;
use egui_kittest::Harness;
use medseg::gui::MedsegApp;
use medseg::jobs::predict::{predict, PredictOptions};
use medseg::jobs::segment::{load_model, ModelRef};
use medseg::jobs::Silent;
use medseg_data::volume::load_labels;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The bundled polyp sample (an image without labels).
const POLYP_SAMPLE: usize = 2;

/// A compact SA-UMamba (width 16, one class "polyp") with the official initialisation, saved
/// as a training checkpoint (`best.json` + safetensors) in `dir`; returns the JSON's path.
fn checkpoint(dir: &std::path::Path, device: &burn::tensor::Device) -> PathBuf {
    use medseg_model::nn::net::NetConfig;
    use medseg_model::train::{checkpoint, trainer};
    let cfg = NetConfig::by_name("sa-umamba", 256)
        .unwrap()
        .with_width(16)
        .unwrap();
    let mut train = trainer::TrainConfig::reference(cfg.clone(), 1);
    train.input.classes = vec!["background".into(), "polyp".into()];
    let mut net = trainer::init_network(&cfg, 5, device).unwrap();
    let report = trainer::EpochReport {
        epoch: 1,
        lr: 1e-3,
        train_loss: 1.0,
        ..Default::default()
    };
    checkpoint::save(dir, "best", &mut net, &train, &report).unwrap();
    dir.join("best.json")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("medseg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The predict job at threshold 0.5 without replacing files.
fn run_predict(
    model: &mut medseg_model::segment::SegModel,
    inputs: Vec<PathBuf>,
    out: &std::path::Path,
) -> medseg::jobs::predict::PredictReport {
    let opts = PredictOptions {
        inputs,
        out: out.to_path_buf(),
        threshold: 0.5,
        overwrite: false,
    };
    predict(model, &opts, &Silent, &mut |_, _, _| {}).unwrap()
}

/// Steps until the task list is empty (segmenting on a CPU rasteriser takes a while).
fn wait_idle(h: &mut Harness<'static, MedsegApp>) {
    let t0 = Instant::now();
    while !h.state().tasks.is_idle() {
        h.step();
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "segmenting did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
}

/// Open a model file and the polyp sample, press Segment, wait for the proposal, move the
/// threshold, Accept, undo, redo; the accepted mask is what the predict job writes for the same
/// image; Cancel right after Segment leaves the labels as they were.
#[test]
fn segment_review_accept_undo_and_match_predict() {
    let Some(mut h) = app_harness_compute([1200.0, 800.0]) else {
        return;
    };
    let device = h.state_mut().compute().unwrap().device.clone();
    let dir = scratch("segment-model");
    let model = checkpoint(&dir, &device);
    h.state_mut().open_model(model.clone());
    wait_idle(&mut h);
    assert!(
        h.state().error_message().is_none(),
        "{:?}",
        h.state().error_message()
    );
    assert!(
        h.state().status.0.contains("Model ready"),
        "{}",
        h.state().status.0
    );
    h.state_mut().open_sample(POLYP_SAMPLE);
    wait_idle(&mut h);
    h.state_mut().segment();
    wait_idle(&mut h);
    let app = h.state();
    if let Some(e) = app.error_message() {
        panic!("segmenting failed: {e}");
    }
    let doc = app.doc.as_ref().expect("sample open");
    let review = doc.proposal.as_ref().expect("a proposal after Segment");
    assert!(review.model.contains("polyp"), "{}", review.model);
    assert!(
        doc.labels.labels.iter().all(|&l| l == 0),
        "a proposal is not in the labels yet"
    );
    let at_half = doc.proposal_sizes()[0].1;
    assert!(at_half > 0, "the model found no polyp in the polyp sample");

    // Lower and raise the threshold: the proposal grows and shrinks without running again.
    h.state_mut().doc.as_mut().unwrap().set_threshold(0.2);
    h.step();
    let low = h.state().doc.as_ref().unwrap().proposal_sizes()[0].1;
    h.state_mut().doc.as_mut().unwrap().set_threshold(0.8);
    h.step();
    let high = h.state().doc.as_ref().unwrap().proposal_sizes()[0].1;
    assert!(
        low >= at_half && at_half >= high,
        "{low} ≥ {at_half} ≥ {high}"
    );
    h.state_mut().doc.as_mut().unwrap().set_threshold(0.5);
    h.step();

    h.state_mut().accept_proposal();
    h.run_steps(2);
    let accepted = h.state().doc.as_ref().unwrap().labels.clone();
    let n = accepted.labels.iter().filter(|&&l| l != 0).count();
    assert_eq!(
        n, at_half,
        "Accept labels exactly the proposal at its threshold"
    );
    h.state_mut().undo();
    h.step();
    let doc = h.state().doc.as_ref().unwrap();
    assert!(
        doc.labels.labels.iter().all(|&l| l == 0),
        "undo takes the accept back"
    );
    h.state_mut().redo();
    h.step();
    assert_eq!(
        h.state().doc.as_ref().unwrap().labels.labels,
        accepted.labels
    );

    // The same image through the predict job writes the same mask.
    let out = scratch("predict-vs-app");
    let input = assets().join("polyp_kvasir_cju0t4oil7vzk099370nun5h9.jpg");
    let mut model = load_model(&ModelRef::File(model), &device, &Silent).unwrap();
    let report = run_predict(&mut model, vec![input], &out);
    assert_eq!(report.failed, 0, "{}", report.to_text());
    let written = load_labels(&out.join("polyp_kvasir_cju0t4oil7vzk099370nun5h9.png")).unwrap();
    let a: Vec<bool> = accepted.labels.iter().map(|&l| l != 0).collect();
    let b: Vec<bool> = written.labels.iter().map(|&l| l != 0).collect();
    assert_eq!(a, b, "the app's accepted mask and predict's mask differ");
    std::fs::remove_dir_all(&out).ok();

    // Cancel right after pressing Segment: the labels stay as they are, no proposal appears.
    let before = h.state().doc.as_ref().unwrap().labels.labels.clone();
    h.state_mut().segment();
    for t in &h.state().tasks.running {
        t.cancel();
    }
    wait_idle(&mut h);
    let doc = h.state().doc.as_ref().unwrap();
    assert!(doc.proposal.is_none(), "a cancelled run left a proposal");
    assert_eq!(doc.labels.labels, before);
    assert!(
        h.state().status.0.contains("cancelled"),
        "{}",
        h.state().status.0
    );
}

/// predict keeps a NIfTI's header (dims and affine), writes PNG for a raster image, reports a
/// corrupt file and writes the others, and refuses a model whose channels do not fit.
#[test]
fn predict_round_trips_headers_and_survives_bad_files() {
    let Some(mut h) = app_harness_compute([400.0, 300.0]) else {
        return;
    };
    let device = h.state_mut().compute().unwrap().device.clone();
    let models = scratch("predict-model");
    let model_json = checkpoint(&models, &device);
    let inputs = scratch("predict-inputs");
    std::fs::copy(
        assets().join("ct_abdomen.nii.gz"),
        inputs.join("ct_abdomen.nii.gz"),
    )
    .unwrap();
    std::fs::copy(
        assets().join("polyp_kvasir_cju0t4oil7vzk099370nun5h9.jpg"),
        inputs.join("frame.jpg"),
    )
    .unwrap();
    std::fs::write(inputs.join("broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let mut model = load_model(&ModelRef::File(model_json), &device, &Silent).unwrap();
    let out = scratch("predict-out");
    let report = run_predict(&mut model, vec![inputs.clone()], &out);
    assert_eq!(report.files.len(), 3, "{}", report.to_text());
    assert_eq!(report.failed, 1, "{}", report.to_text());
    let broken = report
        .files
        .iter()
        .find(|f| f.input.ends_with("broken.png"))
        .unwrap();
    assert!(
        broken.error.as_ref().unwrap().contains("broken.png"),
        "{broken:?}"
    );
    let ct = medseg_data::load(&assets().join("ct_abdomen.nii.gz")).unwrap();
    let mask = load_labels(&out.join("ct_abdomen.nii.gz")).unwrap();
    assert_eq!(mask.geometry.dims, ct.geometry.dims);
    assert!(
        mask.geometry.matches(&ct.geometry, 1e-6),
        "the mask lost the CT's affine"
    );
    let frame = load_labels(&out.join("frame.png")).unwrap();
    assert_eq!(frame.geometry.dims, [256, 256, 1]);
    // Again without --overwrite: existing masks are refused per file, not replaced.
    let again = run_predict(&mut model, vec![inputs.join("frame.jpg")], &out);
    assert_eq!(again.failed, 1);
    assert!(again.files[0].error.as_ref().unwrap().contains("exists"));

    // A one-channel network refuses an RGB image with a message naming both.
    use medseg_model::nn::net::NetConfig;
    use medseg_model::nn::vm_unet::VmUnetConfig;
    let cfg = NetConfig::VmUnet(VmUnetConfig {
        in_channels: 1,
        ..VmUnetConfig::paper(1)
    })
    .with_width(16)
    .unwrap();
    let net = medseg_model::train::trainer::init_network(&cfg, 7, &device).unwrap();
    let spec = medseg_data::preprocess::InputSpec {
        channels: 1,
        ..medseg_data::preprocess::InputSpec::reference(
            256,
            medseg_data::preprocess::InputSpec::default_classes(1),
        )
    };
    let mut grey = medseg_model::segment::SegModel::new(net, spec, "grey test".into()).unwrap();
    let rgb = medseg_data::load(&inputs.join("frame.jpg")).unwrap();
    let e = grey
        .segment(&rgb, &mut |_, _| true)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("3 channel") && e.contains("takes 1"), "{e}");
    for d in [inputs, out, models] {
        std::fs::remove_dir_all(d).ok();
    }
}
