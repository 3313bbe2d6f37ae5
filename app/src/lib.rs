//! The `medseg` app: the desktop GUI (`gui`) used by the `medseg` binary.

pub mod gui;
