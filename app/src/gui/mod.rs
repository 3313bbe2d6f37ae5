//! The desktop app (eframe + egui on wgpu). State lives in [`document`] (image, labels, planes,
//! brush, the proposal under review), [`undo`] and [`tasks`] (worker threads with progress and
//! cancel); [`app`] holds the window's state and turns input into actions; [`ui`] has one file
//! per panel (menu bar, side panel, Segment panel, status bar, views, dialogs); [`render`] draws
//! the planes with our WGSL shader.

pub mod app;
pub mod document;
#[cfg(target_arch = "wasm32")]
pub mod page;
pub mod recent;
pub mod render;
pub mod sample;
pub mod tasks;
pub mod training;
pub mod ui;
pub mod undo;

pub use app::MedsegApp;

use std::path::PathBuf;
use std::sync::Arc;

/// What to do right after the window opens.
#[derive(Default)]
pub struct Startup {
    /// Image, volume or DICOM folder to open (the bundled CT sample when None).
    pub image: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// Save a screenshot here once everything is loaded, then quit.
    pub screenshot: Option<PathBuf>,
}

/// eframe options: our wgpu device is requested with the adapter's own features and limits, as
/// the networks' kernels need (the same device is handed to burn).
#[cfg(not(target_arch = "wasm32"))]
pub fn native_options() -> eframe::NativeOptions {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.device_descriptor = Arc::new(medseg_model::gpu::device_descriptor);
    // The same adapter choice as the command line: MEDSEG_BACKEND and MEDSEG_ADAPTER, discrete
    // before integrated before software; only adapters that can draw to the window.
    if let Ok(b) = medseg_model::gpu::backends_from_env() {
        setup.instance_descriptor.backends = b;
    }
    setup.native_adapter_selector = Some(Arc::new(|adapters, surface| {
        let usable: Vec<_> = adapters
            .iter()
            .filter(|a| surface.is_none_or(|s| a.is_surface_supported(s)))
            .cloned()
            .collect();
        let filter = std::env::var("MEDSEG_ADAPTER").ok();
        medseg_model::gpu::pick_adapter(usable, filter.as_deref()).map_err(|e| e.to_string())
    }));
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("medseg")
            .with_inner_size([1280.0, 860.0])
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Opens the window and runs until it is closed.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(startup: Startup) -> Result<(), String> {
    eframe::run_native(
        "medseg",
        native_options(),
        Box::new(move |cc| {
            let rs = cc.wgpu_render_state.as_ref().ok_or(
                "no wgpu renderer: medseg needs a GPU with Vulkan, Metal or DX12 (or Mesa's lavapipe)",
            )?;
            let mut app = MedsegApp::new(rs);
            app.set_context(&cc.egui_ctx);
            app.warm_up();
            match startup.image {
                Some(p) => app.open_image(p),
                None => app.open_sample(0),
            }
            if let Some(l) = startup.labels {
                app.open_labels(l);
            }
            if let Some(s) = startup.screenshot {
                return Ok(Box::new(ScreenshotWhenReady { app, target: Some(s), frames: 0 }));
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("could not open the window: {e}"))
}

/// Runs the app until nothing is loading, lets a few frames settle, saves a screenshot and quits.
#[cfg(not(target_arch = "wasm32"))]
struct ScreenshotWhenReady {
    app: MedsegApp,
    target: Option<PathBuf>,
    frames: u32,
}

#[cfg(not(target_arch = "wasm32"))]
impl eframe::App for ScreenshotWhenReady {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        eframe::App::ui(&mut self.app, ui, frame);
        if self.app.tasks.is_idle() && self.app.doc.is_some() {
            self.frames += 1;
        }
        if let Some(msg) = self.app.error_message() {
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
        if self.frames >= 3 {
            if let Some(t) = self.target.take() {
                self.app.screenshot(t, true);
            }
        }
        ui.ctx().request_repaint();
    }
}

/// What the page asks for in its address (`?sample=N&segment=1&report=1`): a bundled sample to
/// open (default: the colonoscopy frame), whether to segment it with its bundled model at once,
/// and whether to post the first mask and errors back to the serving page (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebStart {
    pub sample: usize,
    pub segment: bool,
    pub report: bool,
}

impl WebStart {
    /// From a URL query string (with or without its `?`); unknown keys and bad values are
    /// ignored.
    pub fn from_query(query: &str) -> WebStart {
        let mut start = WebStart {
            sample: 2,
            segment: false,
            report: false,
        };
        for pair in query.trim_start_matches('?').split('&') {
            match pair.split_once('=') {
                Some(("sample", v)) => {
                    if let Some(i) = v
                        .parse()
                        .ok()
                        .filter(|&i: &usize| i < sample::SAMPLES.len())
                    {
                        start.sample = i;
                    }
                }
                Some(("segment", v)) => start.segment = v == "1",
                Some(("report", v)) => start.report = v == "1",
                _ => {}
            }
        }
        start
    }
}

/// eframe's options in the browser: WebGPU only (the networks need compute shaders), the
/// device asked for with what the browser's adapter offers.
#[cfg(target_arch = "wasm32")]
pub fn web_options() -> eframe::WebOptions {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.instance_descriptor.backends = wgpu::Backends::BROWSER_WEBGPU;
    setup.device_descriptor = Arc::new(medseg_model::gpu::device_descriptor);
    eframe::WebOptions {
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs the app in `canvas` (the browser build's entry, `web/`).
#[cfg(target_arch = "wasm32")]
pub async fn run_web(canvas: web_sys::HtmlCanvasElement, start: WebStart) -> Result<(), String> {
    eframe::WebRunner::new()
        .start(
            canvas,
            web_options(),
            Box::new(move |cc| {
                let rs = cc
                    .wgpu_render_state
                    .as_ref()
                    .ok_or("no WebGPU renderer: this page needs a browser with WebGPU")?;
                let mut app = MedsegApp::new(rs);
                app.set_context(&cc.egui_ctx);
                match (start.segment, sample::SAMPLES[start.sample].model) {
                    (true, Some(m)) => app.open_sample_and_segment(start.sample, m),
                    _ => app.open_sample(start.sample),
                }
                Ok(Box::new(app))
            }),
        )
        .await
        .map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::WebStart;

    #[test]
    fn the_page_address_picks_the_sample_and_segment() {
        let default = WebStart {
            sample: 2,
            segment: false,
            report: false,
        };
        assert_eq!(WebStart::from_query(""), default);
        assert_eq!(
            WebStart::from_query("?sample=1&segment=1&report=1"),
            WebStart {
                sample: 1,
                segment: true,
                report: true,
            }
        );
        // Out of range, not a number, or unknown keys: ignored.
        assert_eq!(WebStart::from_query("?sample=9&x=y&segment=yes"), default);
        assert_eq!(WebStart::from_query("sample=-1&sample"), default);
    }
}
