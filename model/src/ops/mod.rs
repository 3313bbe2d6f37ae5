//! Hand-written GPU ops that burn's autodiff differentiates through our own backward kernels.

pub mod adamw;
pub mod conv;
pub mod launch;
pub mod rfa;
pub mod scan;
pub mod sema;
