//! Files in the browser build: a page cannot read paths, so the files the user picks or drops
//! are kept here in memory under their names, and the jobs that open a path read from here.
//! Saving becomes a download. Nothing leaves the machine: the bytes stay in the page.

use super::JobError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasm_bindgen::JsCast;

thread_local! {
    static FILES: RefCell<HashMap<PathBuf, Arc<[u8]>>> = RefCell::new(HashMap::new());
}

/// Keeps a picked or dropped file; the path to open it by.
pub fn keep(name: &str, bytes: Arc<[u8]>) -> PathBuf {
    let path = PathBuf::from(name);
    FILES.with(|f| f.borrow_mut().insert(path.clone(), bytes));
    path
}

/// The bytes of a file kept by [`keep`].
pub fn read(path: &Path) -> Result<Arc<[u8]>, JobError> {
    FILES
        .with(|f| f.borrow().get(path).cloned())
        .ok_or_else(|| {
            JobError::Invalid(format!(
                "{}: not among the files opened in this page (pick it with File > Open or drop it on the window)",
                path.display()
            ))
        })
}

/// Offers `bytes` to the user as a download named `name`.
pub fn download(name: &str, bytes: &[u8]) -> Result<(), JobError> {
    let failed =
        |what: &str| JobError::Failed(format!("could not offer {name} for download: {what}"));
    let window = web_sys::window().ok_or_else(|| failed("no window"))?;
    let document = window.document().ok_or_else(|| failed("no document"))?;
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/octet-stream");
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .map_err(|_| failed("the browser refused the data"))?;
    let url =
        web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| failed("no object URL"))?;
    let a = document
        .create_element("a")
        .map_err(|_| failed("no link element"))?
        .dyn_into::<web_sys::HtmlAnchorElement>()
        .map_err(|_| failed("no link element"))?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // The URL stays valid for the page's life: revoking it at once can cancel the download.
    Ok(())
}
