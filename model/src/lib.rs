//! medseg's model library: GPU context, hand-written WGSL ops with their CPU twins, networks,
//! training, data I/O and metrics. No GUI code lives here.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod error;
pub mod fixtures;
pub mod gpu;
pub mod infer;
pub mod nn;
pub mod ops;
pub mod parity;
pub mod pth;
pub mod reference;
pub mod segment;
pub mod shaders;
pub mod ss2d;
pub mod tensors;
pub mod train;

pub use error::{GpuError, ShapeError};
