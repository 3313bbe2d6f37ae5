//! The browser build of the medseg app: the same GUI and jobs as the desktop, drawn by eframe
//! on WebGPU into the page's `<canvas id="medseg">` (`web/index.html`). The networks run on the
//! page's WebGPU device through the same WGSL kernels; files stay in the page. Built with
//! `scripts/build-web.sh` into a static folder that `medseg serve-web` serves on 127.0.0.1.
//!
//! The page's address picks what opens first: `?sample=N` (a bundled sample, default the
//! colonoscopy frame) and `segment=1` (segment it with its bundled model at once);
//! `report=1` (tests) posts the first mask to the serving page's `/report/` paths.

#![cfg(target_arch = "wasm32")]

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Runs when the module loads: starts the app, or shows why it cannot start.
#[wasm_bindgen(start)]
pub fn start() {
    // Warnings and errors of the GPU stack (wgpu, the compute runtime) go to the browser's
    // console, where a page's user (and the browser test) can read them.
    let _ = eframe::WebLogger::init(log::LevelFilter::Warn);
    wasm_bindgen_futures::spawn_local(async {
        match run().await {
            Ok(()) => status("", false),
            Err(e) => status(&format!("medseg could not start: {e}"), true),
        }
    });
}

async fn run() -> Result<(), String> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    let canvas = document
        .get_element_by_id("medseg")
        .ok_or("the page has no <canvas id=\"medseg\">")?
        .dyn_into::<web_sys::HtmlCanvasElement>()
        .map_err(|_| "#medseg is not a canvas")?;
    let query = window.location().search().unwrap_or_default();
    medseg::gui::run_web(canvas, medseg::gui::WebStart::from_query(&query)).await
}

/// Shows `text` in the page's `#status` line (hidden when empty).
fn status(text: &str, error: bool) {
    let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("status"))
    else {
        return;
    };
    el.set_text_content(Some(text));
    let _ = el.set_attribute("class", if error { "error" } else { "" });
    if let Some(el) = el.dyn_ref::<web_sys::HtmlElement>() {
        el.set_hidden(text.is_empty());
    }
}
