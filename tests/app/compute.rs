//! The app hands its own wgpu device to burn: our selective-scan kernel runs on the device the
//! window draws with, and drawing still works afterwards.

use crate::harness::*;

#[test]
fn the_window_device_runs_our_kernels() {
    let Some(mut h) = with_sample(app_harness_compute([900.0, 700.0]), 1) else {
        return;
    };
    let ctx = h
        .state_mut()
        .compute()
        .expect("burn starts on the app's device");
    medseg_model::gpu::kernel_self_test(&ctx.device).unwrap();
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
