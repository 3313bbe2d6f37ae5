//! Building a harness around `MedsegApp` and helpers to drive it.

use egui_kittest::wgpu::{create_render_state, default_wgpu_setup, WgpuTestRenderer};
use egui_kittest::Harness;
use medseg::gui::document::{Plane, ViewMapping};
use medseg::gui::MedsegApp;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Is a GPU adapter (hardware or lavapipe) present? Without one the GUI tests skip — unless CI or
/// MEDSEG_REQUIRE_GPU is set, where that is a failure.
pub fn adapter_present() -> bool {
    let instance = egui_wgpu::wgpu::Instance::new(
        egui_wgpu::wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
    );
    let found = !pollster::block_on(instance.enumerate_adapters(egui_wgpu::wgpu::Backends::all()))
        .is_empty();
    if !found {
        assert!(
            !medseg_model::gpu::gpu_required(),
            "no GPU adapter found, and CI / MEDSEG_REQUIRE_GPU requires one (install \
             mesa-vulkan-drivers for lavapipe)"
        );
        eprintln!("skipping: no GPU adapter (set MEDSEG_REQUIRE_GPU=1 to make this a failure)");
    }
    found
}

pub fn app_harness(size: [f32; 2]) -> Option<Harness<'static, MedsegApp>> {
    harness_with(size, default_wgpu_setup())
}

/// As the desktop app creates its device: the adapter's own features and limits (what the
/// networks' kernels need), on the adapter kittest prefers (lavapipe when present).
pub fn app_harness_compute(size: [f32; 2]) -> Option<Harness<'static, MedsegApp>> {
    let mut setup = default_wgpu_setup();
    if let egui_wgpu::WgpuSetup::CreateNew(s) = &mut setup {
        s.device_descriptor = std::sync::Arc::new(medseg_model::gpu::device_descriptor);
    }
    harness_with(size, setup)
}

fn harness_with(
    size: [f32; 2],
    setup: egui_wgpu::WgpuSetup,
) -> Option<Harness<'static, MedsegApp>> {
    if !adapter_present() {
        return None;
    }
    let rs = create_render_state(setup, egui_wgpu::RendererOptions::PREDICTABLE);
    let app = MedsegApp::new(&rs);
    let harness = Harness::builder()
        .with_size(size)
        .with_step_dt(1.0 / 30.0)
        .with_render_cursor(false)
        .renderer(WgpuTestRenderer::from_render_state(rs))
        .build_ui_state(|ui, app: &mut MedsegApp| app.show(ui), app);
    Some(harness)
}

/// A harness with bundled sample `sample` open (0: CT with organs, 1: dermoscopy with mask).
pub fn with_sample(
    harness: Option<Harness<'static, MedsegApp>>,
    sample: usize,
) -> Option<Harness<'static, MedsegApp>> {
    let mut h = harness?;
    h.state_mut().open_sample(sample);
    settle(&mut h);
    Some(h)
}

/// Steps until no task runs (up to a minute).
pub fn settle(h: &mut Harness<'static, MedsegApp>) {
    let t0 = Instant::now();
    loop {
        h.step();
        if h.state().tasks.is_idle() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "a task did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(2);
}

/// The mapping of a plane as drawn in the last frame.
pub fn mapping(h: &Harness<'static, MedsegApp>, plane: Plane) -> ViewMapping {
    h.state()
        .drawn
        .get(&plane)
        .unwrap_or_else(|| panic!("{plane:?} is not on screen"))
        .mapping
}

/// The screen point (points) of a voxel's centre in a plane.
pub fn screen_of(m: &ViewMapping, v: [usize; 3]) -> egui::Pos2 {
    let s = m.screen_of([v[0] as f64 + 0.5, v[1] as f64 + 0.5, v[2] as f64 + 0.5]);
    egui::pos2(s[0], s[1])
}

pub fn pixel(img: &image::RgbaImage, p: egui::Pos2) -> [u8; 3] {
    let px = img.get_pixel(p.x.floor() as u32, p.y.floor() as u32).0;
    [px[0], px[1], px[2]]
}

/// Display value of an intensity under a window (what the shader computes), 0..255.
pub fn windowed(value: f32, level: f32, width: f32) -> f32 {
    ((value - (level - 0.5 * width)) / width).clamp(0.0, 1.0) * 255.0
}

pub fn close(a: [u8; 3], b: [f32; 3], tol: f32) -> bool {
    (0..3).all(|i| (a[i] as f32 - b[i]).abs() <= tol)
}

pub fn assets() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

/// `dir/images` and `dir/masks` with the first `n` pairs of the shared polyp set.
pub fn tiny_polyp(dir: &std::path::Path, n: usize) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/polyp");
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let mut names: Vec<PathBuf> = std::fs::read_dir(src.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names.into_iter().take(n) {
            std::fs::copy(&p, dir.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
}
