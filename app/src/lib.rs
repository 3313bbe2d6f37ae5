//! The `medseg` app: the desktop GUI (`gui`) and the jobs (`jobs`) it shares with the `medseg`
//! command line.

pub mod gui;
pub mod jobs;
