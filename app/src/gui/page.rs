//! The browser page around the app (wasm only): when the page's address asks for it
//! (`report=1`, used by the browser test), the first mask and any error are posted back to the
//! same origin that served the page, with the time since the page started loading. Nothing is
//! posted otherwise: the user's data never leaves the page.

use medseg_data::volume::LabelMap;
use std::path::Path;

/// Milliseconds since the page started loading.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Posts `body` to `path` on the page's own origin (fire and forget).
pub fn post(path: String, body: Vec<u8>) {
    wasm_bindgen_futures::spawn_local(async move {
        let Some(window) = web_sys::window() else {
            return;
        };
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&js_sys::Uint8Array::from(&body[..]).into());
        let request = window.fetch_with_str_and_init(&path, &init);
        let _ = wasm_bindgen_futures::JsFuture::from(request).await;
    });
}

/// Posts a proposal's mask (PNG, threshold 0.5) to `/report/mask?ms=…`.
pub fn report_mask(labels: &LabelMap) {
    match medseg_data::raster::png_labels_bytes(Path::new("mask.png"), labels) {
        Ok(png) => post(format!("/report/mask?ms={:.0}", now_ms()), png),
        Err(e) => report_error(&e.to_string()),
    }
}

/// Posts an error message to `/report/error`.
pub fn report_error(text: &str) {
    post("/report/error".into(), text.as_bytes().to_vec());
}

/// Whether the page's address asks for reports (`report=1`, read by [`super::WebStart`]).
pub fn reports_wanted() -> bool {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|q| super::WebStart::from_query(&q).report)
}
