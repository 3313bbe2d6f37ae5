//! The app hands its own wgpu device to burn: our selective-scan kernel runs on the device the
//! window draws with, and drawing still works afterwards.

use crate::harness::*;
use medseg_model::fixtures::{tensor, values};
use medseg_model::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};

#[test]
fn the_window_device_runs_our_kernels() {
    let Some(mut h) = app_harness_compute([900.0, 700.0]) else {
        return;
    };
    h.state_mut().open_sample(1);
    settle(&mut h);
    let ctx = h
        .state_mut()
        .compute()
        .expect("burn starts on the app's device");
    let dev = &ctx.device;
    // y_t = C h_t + D u_t with B = C = 1, a strongly decaying A, D = 0: h_t = delta_t u_t.
    let y = selective_scan(
        ScanInput {
            u: tensor(vec![1.0, 2.0, 3.0], [1, 1, 3, 1], dev),
            delta: tensor(vec![30.0; 3], [1, 1, 3, 1], dev),
            a: tensor(vec![-50.0], [1, 1], dev),
            b: tensor(vec![1.0; 3], [1, 1, 3, 1], dev),
            c: tensor(vec![1.0; 3], [1, 1, 3, 1], dev),
            d: tensor(vec![0.0], [1], dev),
            bias: tensor(vec![0.0], [1], dev),
        },
        ScanOrder::Sequential,
        ScanOptions::default(),
    )
    .unwrap();
    let y = values(y).unwrap();
    for (got, want) in y.iter().zip([30.0, 60.0, 90.0]) {
        assert!((got - want).abs() < 1e-4, "{y:?}");
    }
    // The viewer keeps drawing on the shared device.
    h.run_steps(2);
    let img = h.render().expect("render after compute");
    let m = mapping(&h, medseg::gui::document::Plane::Axial);
    let doc = h.state().doc.as_ref().unwrap();
    let v = [300, 20, 0];
    let want: Vec<f32> = doc
        .value_at(v)
        .iter()
        .map(|&x| windowed(x, doc.window.level, doc.window.width))
        .collect();
    let got = pixel(&img, screen_of(&m, v));
    assert!(doc.label_at(v) == 0);
    assert!(
        close(got, [want[0], want[1], want[2]], 2.0),
        "{got:?} vs {want:?}"
    );
}
