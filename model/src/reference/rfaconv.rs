//! RFAConv as SA-UMamba uses it (MODEL-SPEC §A.4.8), forward, in f64 on the CPU: the twin of
//! the GPU kernels to come. Input and output (B, C, H, W); k = 3, stride 1.
//!
//! The final k×k stride-k convolution over the rearranged (C, 3H, 3W) map is computed as a
//! per-pixel product with the 9C attention-weighted features (the "shortcut"); the literal
//! rearrangement is kept for the test that the two agree.

/// BatchNorm parameters and running statistics of `n` channels.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
}

/// PyTorch's BatchNorm defaults.
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// Whether BatchNorm uses batch statistics (and updates the running ones) or running ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    Train,
    Eval,
}

impl BatchNorm {
    /// Normalise (B, n, P) values in place per channel; in train mode from the batch
    /// (biased variance) and update the running statistics (unbiased variance).
    fn apply(&mut self, x: &mut [f64], batch: usize, pixels: usize, mode: BnMode) {
        let n = self.weight.len();
        for ch in 0..n {
            let at = |b: usize, p: usize| (b * n + ch) * pixels + p;
            let (mean, var) = match mode {
                BnMode::Eval => (self.running_mean[ch], self.running_var[ch]),
                BnMode::Train => {
                    let count = (batch * pixels) as f64;
                    let mean = (0..batch)
                        .flat_map(|b| (0..pixels).map(move |p| (b, p)))
                        .map(|(b, p)| x[at(b, p)])
                        .sum::<f64>()
                        / count;
                    let var = (0..batch)
                        .flat_map(|b| (0..pixels).map(move |p| (b, p)))
                        .map(|(b, p)| (x[at(b, p)] - mean).powi(2))
                        .sum::<f64>()
                        / count;
                    let unbiased = if count > 1.0 {
                        var * count / (count - 1.0)
                    } else {
                        var
                    };
                    self.running_mean[ch] =
                        (1.0 - BN_MOMENTUM) * self.running_mean[ch] + BN_MOMENTUM * mean;
                    self.running_var[ch] =
                        (1.0 - BN_MOMENTUM) * self.running_var[ch] + BN_MOMENTUM * unbiased;
                    (mean, var)
                }
            };
            let scale = self.weight[ch] / (var + BN_EPS).sqrt();
            for b in 0..batch {
                for p in 0..pixels {
                    let v = &mut x[at(b, p)];
                    *v = (*v - mean) * scale + self.bias[ch];
                }
            }
        }
    }
}

/// Weights under the official layout: `get_weight.1.weight` α (9C), `generate_feature.0.weight`
/// β (9C·9), `generate_feature.1` BN(9C), `conv.0.weight` W (C, C, 3, 3) and bias, `conv.1` BN(C).
#[derive(Debug, Clone)]
pub struct RfaConv {
    pub channels: usize,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub bn_feature: BatchNorm,
    pub conv_weight: Vec<f64>,
    pub conv_bias: Vec<f64>,
    pub bn_out: BatchNorm,
}

impl RfaConv {
    /// The attention-weighted features G (B, 9C, H, W), channel c·9 + m.
    fn weighted_features(
        &mut self,
        x: &[f64],
        batch: usize,
        h: usize,
        w: usize,
        mode: BnMode,
    ) -> Vec<f64> {
        let c = self.channels;
        let px = h * w;
        let xi = |b: usize, ch: usize, i: isize, j: isize| -> f64 {
            if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                0.0
            } else {
                x[((b * c + ch) * h + i as usize) * w + j as usize]
            }
        };
        let mut feat = vec![0.0; batch * 9 * c * px];
        let mut att = vec![0.0; batch * 9 * c * px];
        for b in 0..batch {
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let (ii, jj) = (i as isize, j as isize);
                        let mut avg = 0.0;
                        for u in -1..=1 {
                            for v in -1..=1 {
                                avg += xi(b, ch, ii + u, jj + v);
                            }
                        }
                        avg /= 9.0;
                        let logits: Vec<f64> =
                            (0..9).map(|m| self.alpha[ch * 9 + m] * avg).collect();
                        let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = logits.iter().map(|l| (l - top).exp()).sum();
                        for (m, logit) in logits.iter().enumerate() {
                            let q = ch * 9 + m;
                            let o = ((b * 9 * c) + q) * px + i * w + j;
                            att[o] = (logit - top).exp() / z;
                            let mut s = 0.0;
                            for u in 0..3 {
                                for v in 0..3 {
                                    s += self.beta[q * 9 + u * 3 + v]
                                        * xi(b, ch, ii + u as isize - 1, jj + v as isize - 1);
                                }
                            }
                            feat[o] = s;
                        }
                    }
                }
            }
        }
        self.bn_feature.apply(&mut feat, batch, px, mode);
        feat.iter().zip(&att).map(|(f, a)| f.max(0.0) * a).collect()
    }

    fn finish(&mut self, mut pre: Vec<f64>, batch: usize, px: usize, mode: BnMode) -> Vec<f64> {
        self.bn_out.apply(&mut pre, batch, px, mode);
        pre.iter().map(|v| v.max(0.0)).collect()
    }

    /// Output (B, C, H, W) through the per-pixel shortcut.
    pub fn forward(
        &mut self,
        x: &[f64],
        batch: usize,
        h: usize,
        w: usize,
        mode: BnMode,
    ) -> Vec<f64> {
        let c = self.channels;
        let px = h * w;
        let g = self.weighted_features(x, batch, h, w, mode);
        let mut pre = vec![0.0; batch * c * px];
        for b in 0..batch {
            for o in 0..c {
                for p in 0..px {
                    let mut s = self.conv_bias[o];
                    for q in 0..9 * c {
                        // W'[o, c·9 + m] = W[o, c, n1, n2] with m = 3·n1 + n2.
                        s += self.conv_weight[o * 9 * c + q] * g[(b * 9 * c + q) * px + p];
                    }
                    pre[(b * c + o) * px + p] = s;
                }
            }
        }
        self.finish(pre, batch, px, mode)
    }

    /// The same output through the literal rearrangement to (C, 3H, 3W) and a stride-3 conv.
    pub fn forward_literal(
        &mut self,
        x: &[f64],
        batch: usize,
        h: usize,
        w: usize,
        mode: BnMode,
    ) -> Vec<f64> {
        let c = self.channels;
        let px = h * w;
        let g = self.weighted_features(x, batch, h, w, mode);
        let (hh, ww) = (3 * h, 3 * w);
        let mut z = vec![0.0; batch * c * hh * ww];
        for b in 0..batch {
            for ch in 0..c {
                for m in 0..9 {
                    let (n1, n2) = (m / 3, m % 3);
                    for i in 0..h {
                        for j in 0..w {
                            z[((b * c + ch) * hh + 3 * i + n1) * ww + 3 * j + n2] =
                                g[((b * 9 * c) + ch * 9 + m) * px + i * w + j];
                        }
                    }
                }
            }
        }
        let mut pre = vec![0.0; batch * c * px];
        for b in 0..batch {
            for o in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let mut s = self.conv_bias[o];
                        for ch in 0..c {
                            for n1 in 0..3 {
                                for n2 in 0..3 {
                                    s += self.conv_weight[((o * c + ch) * 3 + n1) * 3 + n2]
                                        * z[((b * c + ch) * hh + 3 * i + n1) * ww + 3 * j + n2];
                                }
                            }
                        }
                        pre[(b * c + o) * px + i * w + j] = s;
                    }
                }
            }
        }
        self.finish(pre, batch, px, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(s: &mut u64) -> f64 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn bn(n: usize, s: &mut u64) -> BatchNorm {
        BatchNorm {
            weight: (0..n).map(|_| 1.0 + 0.1 * lcg(s)).collect(),
            bias: (0..n).map(|_| 0.1 * lcg(s)).collect(),
            running_mean: (0..n).map(|_| 0.1 * lcg(s)).collect(),
            running_var: (0..n).map(|_| 1.0 + 0.4 * lcg(s)).collect(),
        }
    }

    /// MODEL-SPEC §E.5: the per-pixel shortcut equals the literal rearrange + stride-3 conv.
    #[test]
    fn shortcut_equals_literal_rearrangement() {
        let mut s = 5;
        let c = 3;
        let net = RfaConv {
            channels: c,
            alpha: (0..9 * c).map(|_| lcg(&mut s)).collect(),
            beta: (0..81 * c).map(|_| lcg(&mut s)).collect(),
            bn_feature: bn(9 * c, &mut s),
            conv_weight: (0..9 * c * c).map(|_| 0.3 * lcg(&mut s)).collect(),
            conv_bias: (0..c).map(|_| 0.1 * lcg(&mut s)).collect(),
            bn_out: bn(c, &mut s),
        };
        let (b, h, w) = (2, 4, 5);
        let x: Vec<f64> = (0..b * c * h * w).map(|_| lcg(&mut s)).collect();
        for mode in [BnMode::Eval, BnMode::Train] {
            let a = net.clone().forward(&x, b, h, w, mode);
            let l = net.clone().forward_literal(&x, b, h, w, mode);
            let diff = a
                .iter()
                .zip(&l)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-12, "{mode:?}: {diff}");
            assert!(a.iter().any(|v| *v > 0.0), "ReLU output is not all zero");
        }
    }
}
