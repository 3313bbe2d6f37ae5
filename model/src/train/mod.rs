//! Training: optimiser and schedule (the GPU training loop builds on these).

pub mod adamw;
