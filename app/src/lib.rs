//! The `medseg` app: the desktop GUI (`gui`) and the jobs (`jobs`) it shares with the `medseg`
//! command line, and the local server for the browser build (`serve`).

pub mod gui;
pub mod jobs;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
