//! AdamW as PyTorch defines it (decoupled weight decay, bias-corrected moments), in f64 on
//! the CPU: the reference the GPU optimiser is checked against, and the check of the
//! official-code fixtures' optimiser step.

/// Hyper-parameters; [`AdamW::official`] is SA-UMamba's and VM-UNet's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Moments of one parameter tensor.
#[derive(Debug, Clone, Default)]
pub struct AdamState {
    pub step: u32,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
}

impl AdamW {
    pub fn official() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }

    /// One step on `param` with gradient `grad`.
    pub fn step(&self, param: &mut [f64], grad: &[f64], state: &mut AdamState) {
        assert_eq!(
            param.len(),
            grad.len(),
            "AdamW: parameter and gradient sizes differ"
        );
        if state.m.len() != param.len() {
            state.m = vec![0.0; param.len()];
            state.v = vec![0.0; param.len()];
        }
        state.step += 1;
        let t = state.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for i in 0..param.len() {
            let g = grad[i];
            param[i] *= 1.0 - self.lr * self.weight_decay;
            state.m[i] = self.beta1 * state.m[i] + (1.0 - self.beta1) * g;
            state.v[i] = self.beta2 * state.v[i] + (1.0 - self.beta2) * g * g;
            let denom = (state.v[i] / bc2).sqrt() + self.eps;
            param[i] -= self.lr / bc1 * state.m[i] / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: first step moves by lr·sign(g) (|g| ≫ eps) after the decay.
    #[test]
    fn first_step_is_decay_then_sign() {
        let opt = AdamW::official();
        let mut p = vec![1.0, -2.0, 0.5];
        let mut s = AdamState::default();
        opt.step(&mut p, &[0.3, -4.0, 0.0], &mut s);
        let want = [
            1.0 * (1.0 - 1e-5) - 1e-3,
            -2.0 * (1.0 - 1e-5) + 1e-3,
            0.5 * (1.0 - 1e-5),
        ];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{p:?}");
        }
        // Second step with the same gradient: m̂ = g, v̂ = g², so again lr·sign(g).
        let before = p.clone();
        opt.step(&mut p, &[0.3, -4.0, 0.0], &mut s);
        assert!((p[0] - (before[0] * (1.0 - 1e-5) - 1e-3)).abs() < 1e-9);
    }
}
