//! Typed errors of the model crate.

use thiserror::Error;

/// Everything that can go wrong while finding, creating or using a GPU.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No adapter matched: none present, or none passed the user's filter.
    #[error("no GPU adapter found{filter}: {hint}")]
    NoAdapter { filter: String, hint: String },
    /// The environment asks for a backend name we do not know.
    #[error("unknown graphics backend '{0}' in MEDSEG_BACKEND (expected vulkan, metal, dx12, gl, webgpu or all)")]
    UnknownBackend(String),
    /// The adapter refused to create a device.
    #[error("the adapter '{adapter}' refused to create a device: {message}")]
    RequestDevice { adapter: String, message: String },
    /// burn could not take the device over.
    #[error("could not start the compute runtime on '{adapter}': {message}")]
    Runtime { adapter: String, message: String },
    /// The device is smaller than a job needs.
    #[error("the GPU '{adapter}' is too small for {job}: {limit} is {have}, {need} needed")]
    LimitTooSmall {
        adapter: String,
        job: String,
        limit: &'static str,
        have: u64,
        need: u64,
    },
}

/// Problems with the shapes or values handed to an op.
#[derive(Debug, Error)]
pub enum ShapeError {
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
}

impl ShapeError {
    pub fn new(op: &'static str, message: impl Into<String>) -> Self {
        ShapeError::Invalid {
            op,
            message: message.into(),
        }
    }
}
