//! Plain-Rust (f64) twins of the GPU kernels, for tests and for checking a device.

pub mod conv;
pub mod rfaconv;
pub mod scan;
pub mod sema;
