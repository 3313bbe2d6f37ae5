//! AdamW on the GPU over a module's named parameters, and the cosine learning-rate schedule.
//! The update is the same arithmetic as the f64 reference in [`super::adamw`], one WGSL kernel
//! launch per parameter tensor (`shaders/adamw.wgsl`); moments live on the device, flattened,
//! keyed by the parameter's official name.

use super::adamw::AdamW;
use crate::nn::params::NamedParams;
use crate::ops::adamw::{adamw_update, AdamwStep};
use burn::tensor::{Gradients, Tensor};
use std::collections::HashMap;

/// First and second moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    pub m: Tensor<1>,
    pub v: Tensor<1>,
}

/// AdamW state for a whole module.
#[derive(Debug, Clone)]
pub struct GpuAdamW {
    pub config: AdamW,
    /// Steps taken (bias correction uses it).
    pub step: u32,
    pub moments: HashMap<String, Moments>,
}

impl GpuAdamW {
    pub fn new(config: AdamW) -> Self {
        GpuAdamW {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// One step at learning rate `lr` on every parameter of `module` that received a gradient
    /// in `grads` (parameters without one are left alone, as PyTorch does). Returns how many
    /// parameters were updated.
    pub fn step(&mut self, module: &mut dyn NamedParams, grads: &Gradients, lr: f64) -> usize {
        self.step += 1;
        let c = self.config;
        let scalars = AdamwStep::new(lr, c.beta1, c.beta2, c.eps, c.weight_decay, self.step);
        let mut updated = 0;
        let moments = &mut self.moments;
        module.visit_params("", &mut |name, mut p| {
            let Some(g) = p.to_any().grad(grads) else {
                return;
            };
            let w = p.flat().inner();
            let st = moments.entry(name).or_insert_with(|| Moments {
                m: w.zeros_like(),
                v: w.zeros_like(),
            });
            let (new, m, v) = adamw_update(w, g, st.m.clone(), st.v.clone(), scalars);
            st.m = m;
            st.v = v;
            p.set_flat(new);
            updated += 1;
        });
        updated
    }

    /// Zero while every second moment is finite, NaN or infinite once a gradient was: a NaN or
    /// Inf gradient makes its parameter's `v` NaN/Inf for good, and `0 · Σ v` carries it. Added
    /// to the loss before it is read back, it stops a run whose loss stayed finite while its
    /// gradients did not (a ReLU or a clamp turns a NaN activation into a number). `None`
    /// before the first step.
    pub fn nonfinite_probe(&self) -> Option<Tensor<1>> {
        self.moments
            .values()
            .map(|st| st.v.clone().sum())
            .reduce(|a, b| a + b)
            .map(|s| s.mul_scalar(0.0))
    }
}

/// Cosine annealing stepped per epoch, as PyTorch's `CosineAnnealingLR` in closed form:
/// lr(e) = min + (max − min)(1 + cos(π e / T_max)) / 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cosine {
    pub max_lr: f64,
    pub min_lr: f64,
    pub t_max: usize,
}

impl Cosine {
    /// The official schedule: 1e-3 → 1e-5 over `t_max` epochs.
    pub fn official(t_max: usize) -> Self {
        Cosine {
            max_lr: 1e-3,
            min_lr: 1e-5,
            t_max: t_max.max(1),
        }
    }

    /// Learning rate during epoch `epoch` (0-based).
    pub fn lr(&self, epoch: usize) -> f64 {
        let x = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        self.min_lr + (self.max_lr - self.min_lr) * (1.0 + x.cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_matches_the_closed_form_and_is_periodic() {
        let s = Cosine::official(50);
        assert!((s.lr(0) - 1e-3).abs() < 1e-15);
        assert!((s.lr(50) - 1e-5).abs() < 1e-15);
        assert!((s.lr(25) - (1e-5 + (1e-3 - 1e-5) / 2.0)).abs() < 1e-15);
        assert!((s.lr(100) - 1e-3).abs() < 1e-15, "period 2·T_max");
        assert!((s.lr(10) - s.lr(90)).abs() < 1e-15);
    }
}
