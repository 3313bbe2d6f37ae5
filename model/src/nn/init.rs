//! The official initialisation of VM-UNet / SA-UMamba (MODEL-SPEC §A.8), as a [`WeightSource`]
//! that decides each tensor from its official name and shape:
//! Linear weights N(0, 0.02²); LayerNorm and BatchNorm weight 1, bias 0 (running mean 0, var 1);
//! convolutions PyTorch's default U(±1/√fan_in) for weight and bias; SS2D's x projection
//! U(±1/√E), dt projection U(±R^−½), dt bias the inverse softplus of dt = exp(U(log 1e−3,
//! log 1e−1)) clamped ≥ 1e−4, A_log = log(n + 1), D = 1; RSSS residual scales 1.

use super::params::WeightSource;
use std::collections::HashMap;

pub struct OfficialInit {
    state: u64,
    /// fan_in of every convolution weight handed out, so its bias gets the same bound.
    conv_fan_in: HashMap<String, usize>,
}

impl OfficialInit {
    pub fn new(seed: u64) -> Self {
        OfficialInit {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            conv_fan_in: HashMap::new(),
        }
    }

    /// Uniform in (0, 1) (SplitMix64).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn symmetric(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((2.0 * self.uniform() - 1.0) * bound) as f32)
            .collect()
    }

    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (a, b) = (self.uniform(), self.uniform());
                (std * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect()
    }
}

fn last(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl WeightSource for OfficialInit {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let n: usize = shape.iter().product();
        let leaf = last(name);
        Ok(match (leaf, shape.len()) {
            ("A_logs", 2) => (0..n).map(|i| ((i % shape[1]) as f32 + 1.0).ln()).collect(),
            ("Ds" | "skip_scale" | "skip_scale2", 1) => vec![1.0; n],
            ("x_proj_weight", 3) => self.symmetric(n, 1.0 / (shape[2] as f64).sqrt()),
            ("dt_projs_weight", 3) => self.symmetric(n, 1.0 / (shape[2] as f64).sqrt()),
            ("dt_projs_bias", _) => (0..n)
                .map(|_| {
                    let (lo, hi) = (1e-3f64.ln(), 1e-1f64.ln());
                    let dt = (lo + (hi - lo) * self.uniform()).exp().max(1e-4);
                    (dt + (-(-dt).exp_m1()).ln()) as f32
                })
                .collect(),
            ("weight", 4) => {
                let fan_in = shape[1] * shape[2] * shape[3];
                self.conv_fan_in.insert(name.to_string(), fan_in);
                self.symmetric(n, 1.0 / (fan_in as f64).sqrt())
            }
            ("weight", 2) => self.normal(n, 0.02),
            // LayerNorm / BatchNorm scale.
            ("weight", 1) => vec![1.0; n],
            ("bias", 1) => {
                let weight = format!("{}weight", name.strip_suffix("bias").unwrap_or(name));
                match self.conv_fan_in.get(&weight) {
                    Some(&fan_in) => self.symmetric(n, 1.0 / (fan_in as f64).sqrt()),
                    None => vec![0.0; n],
                }
            }
            _ => {
                return Err(format!(
                    "{name}: no official initialisation for a parameter of shape {shape:?}"
                ))
            }
        })
    }

    fn buffer(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let n: usize = shape.iter().product();
        match last(name) {
            "running_mean" => Ok(vec![0.0; n]),
            "running_var" => Ok(vec![1.0; n]),
            "num_batches_tracked" => Ok(vec![0.0; n]),
            _ => Err(format!("{name}: unknown buffer")),
        }
    }
}

/// USEMA's initialisation: nnU-Net's `InitWeights_He(1e-2)` for the U-Net's convolutions and
/// transposed convolutions (weights N(0, 2/((1 + 0.01²)·fan_in)), fan_in = shape[1]·k·k,
/// biases 0); MLLA's for the SEMA blocks: Linear N(0, 0.02²) with bias 0, and PyTorch's default
/// U(±1/√fan_in) for weight and bias of the depthwise CPE/dwc/LePE convolutions (He-scaled
/// depthwise kernels would triple the residual stream's variance at every CPE); norm scales 1,
/// shifts 0.
pub struct HeInit(OfficialInit);

impl HeInit {
    pub fn new(seed: u64) -> Self {
        HeInit(OfficialInit::new(seed))
    }
}

impl WeightSource for HeInit {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let n: usize = shape.iter().product();
        Ok(match (last(name), shape.len()) {
            // Depthwise (one input channel per group).
            ("weight", 4) if shape[1] == 1 => {
                let fan_in = shape[2] * shape[3];
                self.0.conv_fan_in.insert(name.to_string(), fan_in);
                self.0.symmetric(n, 1.0 / (fan_in as f64).sqrt())
            }
            ("weight", 4) => {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                let std = (2.0 / ((1.0 + 1e-4) * fan_in)).sqrt();
                self.0.normal(n, std)
            }
            ("weight", 2) => self.0.normal(n, 0.02),
            ("weight", 1) => vec![1.0; n],
            ("bias", 1) => {
                let weight = format!("{}weight", name.strip_suffix("bias").unwrap_or(name));
                match self.0.conv_fan_in.get(&weight) {
                    Some(&fan_in) => self.0.symmetric(n, 1.0 / (fan_in as f64).sqrt()),
                    None => vec![0.0; n],
                }
            }
            _ => {
                return Err(format!(
                    "{name}: no initialisation for a parameter of shape {shape:?}"
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::params::{AnyParam, Loader, NamedParams};
    use crate::nn::vm_unet::{VmUnet, VmUnetConfig};
    use burn::tensor::Device;

    fn values(p: &AnyParam) -> Vec<f32> {
        let t = match p {
            AnyParam::R1(p) => p.val().into_data(),
            AnyParam::R2(p) => p.val().into_data(),
            AnyParam::R3(p) => p.val().into_data(),
            AnyParam::R4(p) => p.val().into_data(),
        };
        t.try_to_vec::<f32>().unwrap()
    }

    #[test]
    // The CPU backend enabled in this workspace (burn's ndarray) is enough for building a network.
    #[allow(deprecated)]
    fn sa_umamba_gets_the_official_initialisation() {
        let cfg = VmUnetConfig {
            dims: vec![16, 32],
            depths: vec![1, 1],
            depths_decoder: vec![1, 1],
            ..VmUnetConfig::sa_umamba(1)
        };
        let mut init = OfficialInit::new(7);
        let mut net =
            VmUnet::load(cfg, &mut Loader::new(&mut init, Device::ndarray(), "")).unwrap();
        let mut named = Vec::new();
        net.named_params("", &mut named);
        let by = |suffix: &str| -> Vec<f32> {
            named
                .iter()
                .filter(|(n, _)| n.ends_with(suffix))
                .flat_map(|(_, p)| values(p))
                .collect()
        };
        assert!(by("ln_1.weight").iter().all(|&v| v == 1.0));
        assert!(by("ln_1.bias").iter().all(|&v| v == 0.0));
        assert!(by("skip_scale2").iter().all(|&v| v == 1.0));
        assert!(by("generate_feature.1.weight").iter().all(|&v| v == 1.0));
        let a = by("layers.0.blocks.0.self_attention.A_logs");
        assert_eq!(&a[..3], &[0.0, 2f32.ln(), 3f32.ln()]);
        // softplus(dt bias) within [1e-3, 0.1].
        for b in by("dt_projs_bias") {
            let dt = (b as f64).exp().ln_1p();
            assert!((0.99e-3..=0.1001).contains(&dt), "{dt}");
        }
        // Linear weights: std 0.02.
        let w = by("in_proj.weight");
        let sd = (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((sd - 0.02).abs() < 0.002, "{sd}");
        // Depthwise conv (fan_in 9) weight and bias within ±1/3.
        let c = by("self_attention.conv2d.bias");
        assert!(c.iter().all(|v| v.abs() <= 1.0 / 3.0) && c.iter().any(|v| v.abs() > 0.05));
    }
}
