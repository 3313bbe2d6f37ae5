//! Training: the optimiser (f64 reference and GPU), the schedule, the training loop and
//! checkpoints.

pub mod adamw;
pub mod checkpoint;
pub mod instances;
pub mod optim;
pub mod trainer;
