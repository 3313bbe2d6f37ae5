//! The desktop app driven through egui_kittest on a real wgpu device (lavapipe in CI): open the
//! bundled samples, change window/level, scroll, paint, undo/redo, export, and check the drawn
//! pixels against values computed on the CPU from the image, the labels and the window.

mod browser;
mod compute;
mod harness;
mod segment;
mod train_cli;
mod training;
mod viewer;
mod xvfb;
