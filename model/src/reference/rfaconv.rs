//! RFAConv as SA-UMamba uses it (MODEL-SPEC §A.4.8), forward, in f64 on the CPU: the twin of
//! the GPU kernels to come. Input and output (B, C, H, W); k = 3, stride 1.
//!
//! The final k×k stride-k convolution over the rearranged (C, 3H, 3W) map is computed as a
//! per-pixel product with the 9C attention-weighted features (the "shortcut"); the literal
//! rearrangement is kept for the test that the two agree.

/// The nine-way softmax of `alpha[9c + k] · x` (max-subtracted).
fn tap_softmax(alpha: &[f64], c: usize, x: f64) -> [f64; 9] {
    let mut a = [0.0; 9];
    for (k, ak) in a.iter_mut().enumerate() {
        *ak = alpha[9 * c + k] * x;
    }
    let top = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = a.iter().map(|l| (l - top).exp()).sum();
    a.map(|l| (l - top).exp() / z)
}

/// The receptive-field attention alone, the boundary of the GPU kernel `ops::rfa`:
/// `out[b, 9c + k, p] = feat[b, 9c + k, p] · softmax_k(alpha[9c + k] · pooled[b, c, p])`;
/// pooled (B, C, P), alpha (9C), feat and out (B, 9C, P).
pub fn attention_forward(
    pooled: &[f64],
    alpha: &[f64],
    feat: &[f64],
    channels: usize,
    pixels: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; feat.len()];
    for (i, &x) in pooled.iter().enumerate() {
        let (bc, p) = (i / pixels, i % pixels);
        let a = tap_softmax(alpha, bc % channels, x);
        for (k, ak) in a.iter().enumerate() {
            let j = (bc * 9 + k) * pixels + p;
            out[j] = feat[j] * ak;
        }
    }
    out
}

/// Gradients (pooled, alpha, feat) of `sum(out · dout)` for [`attention_forward`].
pub fn attention_backward(
    pooled: &[f64],
    alpha: &[f64],
    feat: &[f64],
    dout: &[f64],
    channels: usize,
    pixels: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dpooled = vec![0.0; pooled.len()];
    let mut dalpha = vec![0.0; alpha.len()];
    let mut dfeat = vec![0.0; feat.len()];
    for (i, &x) in pooled.iter().enumerate() {
        let (bc, p) = (i / pixels, i % pixels);
        let c = bc % channels;
        let a = tap_softmax(alpha, c, x);
        let j = |k: usize| (bc * 9 + k) * pixels + p;
        let dot: f64 = (0..9).map(|k| a[k] * dout[j(k)] * feat[j(k)]).sum();
        for k in 0..9 {
            dfeat[j(k)] = a[k] * dout[j(k)];
            // d out_k / d logit_m = f_k a_k (δ_km − a_m).
            let dl = a[k] * (dout[j(k)] * feat[j(k)] - dot);
            dpooled[i] += dl * alpha[9 * c + k];
            dalpha[9 * c + k] += dl * x;
        }
    }
    (dpooled, dalpha, dfeat)
}

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
    /// (biased variance) and update the running statistics (unbiased variance). Returns the
    /// normalised values before the affine part (x̂) and 1/sqrt(var + eps) per channel.
    // One channel index addresses weight, bias, both running statistics and the result.
    #[allow(clippy::needless_range_loop)]
    fn apply(
        &mut self,
        x: &mut [f64],
        batch: usize,
        pixels: usize,
        mode: BnMode,
    ) -> (Vec<f64>, Vec<f64>) {
        let n = self.weight.len();
        let mut xhat = vec![0.0; x.len()];
        let mut inv_std = vec![0.0; n];
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
            inv_std[ch] = 1.0 / (var + BN_EPS).sqrt();
            for b in 0..batch {
                for p in 0..pixels {
                    let i = at(b, p);
                    xhat[i] = (x[i] - mean) * inv_std[ch];
                    x[i] = xhat[i] * self.weight[ch] + self.bias[ch];
                }
            }
        }
        (xhat, inv_std)
    }

    /// Backward of `apply` given dL/dy: returns dL/dx and accumulates dweight, dbias.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        dy: &[f64],
        xhat: &[f64],
        inv_std: &[f64],
        batch: usize,
        pixels: usize,
        mode: BnMode,
        dweight: &mut [f64],
        dbias: &mut [f64],
    ) -> Vec<f64> {
        let n = self.weight.len();
        let mut dx = vec![0.0; dy.len()];
        let count = (batch * pixels) as f64;
        for ch in 0..n {
            let idx: Vec<usize> = (0..batch)
                .flat_map(|b| (0..pixels).map(move |p| (b * n + ch) * pixels + p))
                .collect();
            let sum_dy: f64 = idx.iter().map(|&i| dy[i]).sum();
            let sum_dy_xhat: f64 = idx.iter().map(|&i| dy[i] * xhat[i]).sum();
            dweight[ch] += sum_dy_xhat;
            dbias[ch] += sum_dy;
            let k = self.weight[ch] * inv_std[ch];
            for &i in &idx {
                dx[i] = match mode {
                    BnMode::Eval => k * dy[i],
                    BnMode::Train => k * (dy[i] - sum_dy / count - xhat[i] * sum_dy_xhat / count),
                };
            }
        }
        dx
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

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct RfaTrace {
    batch: usize,
    h: usize,
    w: usize,
    mode: BnMode,
    x: Vec<f64>,
    avg: Vec<f64>,
    att: Vec<f64>,
    feat_xhat: Vec<f64>,
    feat_inv_std: Vec<f64>,
    feat_bn: Vec<f64>,
    g: Vec<f64>,
    out_xhat: Vec<f64>,
    out_inv_std: Vec<f64>,
    out_bn: Vec<f64>,
}

/// Gradients of `sum(out · dy)`, in the layouts of the weights.
#[derive(Debug, Clone)]
pub struct RfaGrads {
    pub x: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub bn_feature_weight: Vec<f64>,
    pub bn_feature_bias: Vec<f64>,
    pub conv_weight: Vec<f64>,
    pub conv_bias: Vec<f64>,
    pub bn_out_weight: Vec<f64>,
    pub bn_out_bias: Vec<f64>,
}

impl RfaConv {
    /// The attention-weighted features G (B, 9C, H, W), channel c·9 + m, with the
    /// intermediates the backward pass needs.
    fn weighted_features(
        &mut self,
        x: &[f64],
        batch: usize,
        h: usize,
        w: usize,
        mode: BnMode,
    ) -> RfaTrace {
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
        let mut avgs = vec![0.0; batch * c * px];
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
                        avgs[(b * c + ch) * px + i * w + j] = avg;
                        let a = tap_softmax(&self.alpha, ch, avg);
                        for (m, am) in a.iter().enumerate() {
                            let q = ch * 9 + m;
                            let o = ((b * 9 * c) + q) * px + i * w + j;
                            att[o] = *am;
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
        let (feat_xhat, feat_inv_std) = self.bn_feature.apply(&mut feat, batch, px, mode);
        let g = feat.iter().zip(&att).map(|(f, a)| f.max(0.0) * a).collect();
        RfaTrace {
            batch,
            h,
            w,
            mode,
            x: x.to_vec(),
            avg: avgs,
            att,
            feat_xhat,
            feat_inv_std,
            feat_bn: feat,
            g,
            out_xhat: Vec::new(),
            out_inv_std: Vec::new(),
            out_bn: Vec::new(),
        }
    }

    fn finish(&mut self, mut pre: Vec<f64>, t: &mut RfaTrace) -> Vec<f64> {
        let (xhat, inv_std) = self.bn_out.apply(&mut pre, t.batch, t.h * t.w, t.mode);
        t.out_xhat = xhat;
        t.out_inv_std = inv_std;
        let out = pre.iter().map(|v| v.max(0.0)).collect();
        t.out_bn = pre;
        out
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
        self.forward_trace(x, batch, h, w, mode).0
    }

    /// Output and the trace for [`RfaConv::backward`].
    pub fn forward_trace(
        &mut self,
        x: &[f64],
        batch: usize,
        h: usize,
        w: usize,
        mode: BnMode,
    ) -> (Vec<f64>, RfaTrace) {
        let c = self.channels;
        let px = h * w;
        let mut t = self.weighted_features(x, batch, h, w, mode);
        let mut pre = vec![0.0; batch * c * px];
        for b in 0..batch {
            for o in 0..c {
                for p in 0..px {
                    let mut s = self.conv_bias[o];
                    for q in 0..9 * c {
                        // W'[o, c·9 + m] = W[o, c, n1, n2] with m = 3·n1 + n2.
                        s += self.conv_weight[o * 9 * c + q] * t.g[(b * 9 * c + q) * px + p];
                    }
                    pre[(b * c + o) * px + p] = s;
                }
            }
        }
        let out = self.finish(pre, &mut t);
        (out, t)
    }

    /// Gradients of `sum(out · dy)` (MODEL-SPEC §A.6), with the weights as they were for the
    /// forward pass.
    pub fn backward(&self, t: &RfaTrace, dy: &[f64]) -> RfaGrads {
        let c = self.channels;
        let (batch, h, w) = (t.batch, t.h, t.w);
        let px = h * w;
        let mut gr = RfaGrads {
            x: vec![0.0; t.x.len()],
            alpha: vec![0.0; 9 * c],
            beta: vec![0.0; 81 * c],
            bn_feature_weight: vec![0.0; 9 * c],
            bn_feature_bias: vec![0.0; 9 * c],
            conv_weight: vec![0.0; 9 * c * c],
            conv_bias: vec![0.0; c],
            bn_out_weight: vec![0.0; c],
            bn_out_bias: vec![0.0; c],
        };
        // Final ReLU and BatchNorm.
        let d_bn: Vec<f64> = dy
            .iter()
            .zip(&t.out_bn)
            .map(|(d, v)| if *v > 0.0 { *d } else { 0.0 })
            .collect();
        let d_pre = self.bn_out.backward(
            &d_bn,
            &t.out_xhat,
            &t.out_inv_std,
            batch,
            px,
            t.mode,
            &mut gr.bn_out_weight,
            &mut gr.bn_out_bias,
        );
        // Per-pixel product with the weighted features.
        let mut dg = vec![0.0; t.g.len()];
        for b in 0..batch {
            for o in 0..c {
                for p in 0..px {
                    let d = d_pre[(b * c + o) * px + p];
                    gr.conv_bias[o] += d;
                    for q in 0..9 * c {
                        let gi = (b * 9 * c + q) * px + p;
                        gr.conv_weight[o * 9 * c + q] += d * t.g[gi];
                        dg[gi] += self.conv_weight[o * 9 * c + q] * d;
                    }
                }
            }
        }
        // G = A ⊙ ReLU(BN(F)): the feature branch and the attention branch.
        let mut d_feat_bn = vec![0.0; dg.len()];
        let mut d_att = vec![0.0; dg.len()];
        for i in 0..dg.len() {
            let f = t.feat_bn[i].max(0.0);
            d_att[i] = dg[i] * f;
            d_feat_bn[i] = if t.feat_bn[i] > 0.0 {
                dg[i] * t.att[i]
            } else {
                0.0
            };
        }
        let d_feat = self.bn_feature.backward(
            &d_feat_bn,
            &t.feat_xhat,
            &t.feat_inv_std,
            batch,
            px,
            t.mode,
            &mut gr.bn_feature_weight,
            &mut gr.bn_feature_bias,
        );
        let xi = |b: usize, ch: usize, i: isize, j: isize| -> Option<usize> {
            if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                None
            } else {
                Some(((b * c + ch) * h + i as usize) * w + j as usize)
            }
        };
        for b in 0..batch {
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        let p = i * w + j;
                        let at = |m: usize| ((b * 9 * c) + ch * 9 + m) * px + p;
                        // Softmax backward, then the grouped 1×1 conv and the average pool.
                        let dot: f64 = (0..9).map(|m| t.att[at(m)] * d_att[at(m)]).sum();
                        let mut d_avg = 0.0;
                        for m in 0..9 {
                            let dl = t.att[at(m)] * (d_att[at(m)] - dot);
                            gr.alpha[ch * 9 + m] += dl * t.avg[(b * c + ch) * px + p];
                            d_avg += self.alpha[ch * 9 + m] * dl;
                        }
                        let (ii, jj) = (i as isize, j as isize);
                        for u in -1..=1 {
                            for v in -1..=1 {
                                if let Some(k) = xi(b, ch, ii + u, jj + v) {
                                    gr.x[k] += d_avg / 9.0;
                                }
                            }
                        }
                        // Grouped 3×3 conv of the feature branch.
                        for m in 0..9 {
                            let q = ch * 9 + m;
                            let d = d_feat[at(m)];
                            for u in 0..3 {
                                for v in 0..3 {
                                    if let Some(k) =
                                        xi(b, ch, ii + u as isize - 1, jj + v as isize - 1)
                                    {
                                        gr.beta[q * 9 + u * 3 + v] += d * t.x[k];
                                        gr.x[k] += d * self.beta[q * 9 + u * 3 + v];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        gr
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
        let mut t = self.weighted_features(x, batch, h, w, mode);
        let g = t.g.clone();
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
        self.finish(pre, &mut t)
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
    fn attention_backward_matches_finite_differences() {
        let (b, c, px) = (2, 3, 5);
        let mut seed = 7u64;
        let mut draw = |n: usize, scale: f64| -> Vec<f64> {
            (0..n).map(|_| scale * (lcg(&mut seed) - 0.5)).collect()
        };
        let pooled = draw(b * c * px, 4.0);
        let alpha = draw(9 * c, 3.0);
        let feat = draw(b * 9 * c * px, 2.0);
        let dout = draw(b * 9 * c * px, 2.0);
        let loss = |p: &[f64], a: &[f64], f: &[f64]| -> f64 {
            attention_forward(p, a, f, c, px)
                .iter()
                .zip(&dout)
                .map(|(o, d)| o * d)
                .sum()
        };
        let (dp, da, df) = attention_backward(&pooled, &alpha, &feat, &dout, c, px);
        let h = 1e-6;
        let fd = |which: usize, i: usize| -> f64 {
            let mut v = [pooled.clone(), alpha.clone(), feat.clone()];
            v[which][i] += h;
            let up = loss(&v[0], &v[1], &v[2]);
            v[which][i] -= 2.0 * h;
            let down = loss(&v[0], &v[1], &v[2]);
            (up - down) / (2.0 * h)
        };
        for (which, grad) in [(0, &dp), (1, &da), (2, &df)] {
            for (i, g) in grad.iter().enumerate() {
                let want = fd(which, i);
                assert!(
                    (g - want).abs() <= 1e-7 * (1.0 + want.abs()),
                    "input {which}, element {i}: {g} vs finite difference {want}"
                );
            }
        }
    }

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
