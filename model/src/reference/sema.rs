//! Sequential f64 SEMA window attention (MODEL-SPEC §B.2, §B.3, §B.6), forward and backward,
//! in the GPU kernels' layouts: qk (B, N, 2C) with q in channels [0, C) and k in [C, 2C),
//! v and o (B, N, C), lse (B, heads, N); N = H·W tokens in row-major map order.
//!
//! Per head h (channels [h·D, (h+1)·D)) and window W (a w_h × w_w tile of the map, cut at the
//! bottom and right edges): s_ij = q̃_i·k̃_j / √D over j ∈ W(i), o_i = Σ_j softmax_j(s_ij) v_j,
//! with q̃, k̃ the 2-D RoPE rotations of q and k at their absolute map positions. The SEMA
//! mean term ((1/N) Σ_j v_j added to every row) is [`add_mean`]. Backward materialises each
//! window's probability matrix (the GPU recomputes it from the log-sum-exp instead).

pub use crate::ops::sema::{rope_table, rope_theta, AttnDims};

/// Rotation angle of channel pair `pair` (of the full C) at map position (row, col).
pub fn rope_angle(channels: usize, pair: usize, row: usize, col: usize) -> f64 {
    let kmax = channels / 4;
    if pair < kmax {
        row as f64 * rope_theta(channels, pair)
    } else {
        col as f64 * rope_theta(channels, pair - kmax)
    }
}

/// 2-D RoPE of a (B, N, C) slice taken with stride `stride` and offset `offset` per token
/// (q or k inside qk), by the angle times `sign` (−1 undoes it).
fn rotate(d: &AttnDims, x: &[f64], stride: usize, offset: usize, sign: f64) -> Vec<f64> {
    let c = d.channels;
    let mut out = vec![0.0; d.batch * d.tokens() * c];
    for b in 0..d.batch {
        for n in 0..d.tokens() {
            let (row, col) = (n / d.width, n % d.width);
            let src = (b * d.tokens() + n) * stride + offset;
            let dst = (b * d.tokens() + n) * c;
            for p in 0..c / 2 {
                let (x0, x1) = (x[src + 2 * p], x[src + 2 * p + 1]);
                if d.rope {
                    let a = sign * rope_angle(c, p, row, col);
                    out[dst + 2 * p] = x0 * a.cos() - x1 * a.sin();
                    out[dst + 2 * p + 1] = x0 * a.sin() + x1 * a.cos();
                } else {
                    out[dst + 2 * p] = x0;
                    out[dst + 2 * p + 1] = x1;
                }
            }
        }
    }
    out
}

/// Per window and head: the token list and the row-softmax matrix P (rows = queries).
fn probabilities(
    d: &AttnDims,
    q: &[f64],
    k: &[f64],
    b: usize,
    h: usize,
    tok: &[usize],
) -> Vec<f64> {
    let (c, hd) = (d.channels, d.head_dim());
    let scale = 1.0 / (hd as f64).sqrt();
    let m = tok.len();
    let mut p = vec![0.0; m * m];
    for (i, &ni) in tok.iter().enumerate() {
        let qi = &q[(b * d.tokens() + ni) * c + h * hd..][..hd];
        let row = &mut p[i * m..(i + 1) * m];
        for (j, &nj) in tok.iter().enumerate() {
            let kj = &k[(b * d.tokens() + nj) * c + h * hd..][..hd];
            row[j] = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>();
        }
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|s| (s - mx).exp()).sum();
        for s in row.iter_mut() {
            *s = (*s - mx).exp() / sum;
        }
    }
    p
}

/// o (B, N, C) and the row log-sum-exp (B, heads, N) of the windowed attention.
pub fn forward(d: &AttnDims, qk: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (c, hd, nt) = (d.channels, d.head_dim(), d.tokens());
    let q = rotate(d, qk, 2 * c, 0, 1.0);
    let k = rotate(d, qk, 2 * c, c, 1.0);
    let scale = 1.0 / (hd as f64).sqrt();
    let mut o = vec![0.0; d.batch * nt * c];
    let mut lse = vec![0.0; d.batch * d.heads * nt];
    for b in 0..d.batch {
        for w in 0..d.windows() {
            let tok = d.window_tokens(w);
            for h in 0..d.heads {
                let p = probabilities(d, &q, &k, b, h, &tok);
                for (i, &ni) in tok.iter().enumerate() {
                    let qi = &q[(b * nt + ni) * c + h * hd..][..hd];
                    let scores: Vec<f64> = tok
                        .iter()
                        .map(|&nj| {
                            let kj = &k[(b * nt + nj) * c + h * hd..][..hd];
                            scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    lse[(b * d.heads + h) * nt + ni] =
                        mx + scores.iter().map(|s| (s - mx).exp()).sum::<f64>().ln();
                    for (j, &nj) in tok.iter().enumerate() {
                        let pij = p[i * tok.len() + j];
                        for x in 0..hd {
                            o[(b * nt + ni) * c + h * hd + x] +=
                                pij * v[(b * nt + nj) * c + h * hd + x];
                        }
                    }
                }
            }
        }
    }
    (o, lse)
}

/// Gradients (dqk, dv) of Σ o·dout.
pub fn backward(d: &AttnDims, qk: &[f64], v: &[f64], dout: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (c, hd, nt) = (d.channels, d.head_dim(), d.tokens());
    let q = rotate(d, qk, 2 * c, 0, 1.0);
    let k = rotate(d, qk, 2 * c, c, 1.0);
    let scale = 1.0 / (hd as f64).sqrt();
    let mut dq = vec![0.0; d.batch * nt * c];
    let mut dk = vec![0.0; d.batch * nt * c];
    let mut dv = vec![0.0; d.batch * nt * c];
    let at = |b: usize, n: usize, h: usize| (b * nt + n) * c + h * hd;
    for b in 0..d.batch {
        for w in 0..d.windows() {
            let tok = d.window_tokens(w);
            let m = tok.len();
            for h in 0..d.heads {
                let p = probabilities(d, &q, &k, b, h, &tok);
                // dP_ij = do_i · v_j ; dS = P ∘ (dP − rowsum(P ∘ dP))
                let mut ds = vec![0.0; m * m];
                for i in 0..m {
                    let gi = &dout[at(b, tok[i], h)..][..hd];
                    let dp: Vec<f64> = tok
                        .iter()
                        .map(|&nj| {
                            gi.iter()
                                .zip(&v[at(b, nj, h)..][..hd])
                                .map(|(a, b)| a * b)
                                .sum()
                        })
                        .collect();
                    let rs: f64 = (0..m).map(|j| p[i * m + j] * dp[j]).sum();
                    for j in 0..m {
                        ds[i * m + j] = p[i * m + j] * (dp[j] - rs);
                    }
                }
                for i in 0..m {
                    for j in 0..m {
                        let (ai, aj) = (at(b, tok[i], h), at(b, tok[j], h));
                        for x in 0..hd {
                            dv[aj + x] += p[i * m + j] * dout[ai + x];
                            dq[ai + x] += scale * ds[i * m + j] * k[aj + x];
                            dk[aj + x] += scale * ds[i * m + j] * q[ai + x];
                        }
                    }
                }
            }
        }
    }
    // Undo the rotations (R is orthogonal: the gradient of R x is Rᵀ g).
    let dq = rotate(d, &dq, c, 0, -1.0);
    let dk = rotate(d, &dk, c, 0, -1.0);
    let mut dqk = vec![0.0; d.batch * nt * 2 * c];
    for t in 0..d.batch * nt {
        dqk[t * 2 * c..t * 2 * c + c].copy_from_slice(&dq[t * c..(t + 1) * c]);
        dqk[t * 2 * c + c..(t + 1) * 2 * c].copy_from_slice(&dk[t * c..(t + 1) * c]);
    }
    (dqk, dv)
}

/// SEMA's global term: adds the mean of v over all N tokens (per batch item and channel) to
/// every row of o.
pub fn add_mean(d: &AttnDims, o: &mut [f64], v: &[f64]) {
    let (c, nt) = (d.channels, d.tokens());
    for b in 0..d.batch {
        for x in 0..c {
            let mean = (0..nt).map(|n| v[(b * nt + n) * c + x]).sum::<f64>() / nt as f64;
            for n in 0..nt {
                o[(b * nt + n) * c + x] += mean;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// Σ o·g as a function of qk and v, differentiated by central differences.
    #[test]
    fn backward_matches_finite_differences() {
        // 5×6 map with 4×4 windows: cut windows on both edges; 2 heads of 4 channels.
        let d = AttnDims::new(1, 5, 6, 8, 2, 4, true).unwrap();
        let mut s = 7u64;
        let n = d.tokens();
        let qk: Vec<f64> = (0..n * 16).map(|_| lcg(&mut s)).collect();
        let v: Vec<f64> = (0..n * 8).map(|_| lcg(&mut s)).collect();
        let g: Vec<f64> = (0..n * 8).map(|_| lcg(&mut s)).collect();
        let f = |qk: &[f64], v: &[f64]| -> f64 {
            forward(&d, qk, v)
                .0
                .iter()
                .zip(&g)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dqk, dv) = backward(&d, &qk, &v, &g);
        let eps = 1e-6;
        for i in (0..qk.len()).step_by(7) {
            let (mut a, mut b) = (qk.clone(), qk.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (f(&a, &v) - f(&b, &v)) / (2.0 * eps);
            assert!((fd - dqk[i]).abs() < 1e-7, "dqk[{i}]: {fd} vs {}", dqk[i]);
        }
        for i in (0..v.len()).step_by(5) {
            let (mut a, mut b) = (v.clone(), v.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (f(&qk, &a) - f(&qk, &b)) / (2.0 * eps);
            assert!((fd - dv[i]).abs() < 1e-7, "dv[{i}]: {fd} vs {}", dv[i]);
        }
    }

    /// RoPE makes the scores depend only on relative positions: shifting every token by the
    /// same offset with the same q/k content leaves the attention pattern unchanged.
    #[test]
    fn rope_scores_are_relative() {
        let c = 8;
        let mut s = 3u64;
        let q: Vec<f64> = (0..c).map(|_| lcg(&mut s)).collect();
        let k: Vec<f64> = (0..c).map(|_| lcg(&mut s)).collect();
        let score = |qr: usize, qc: usize, kr: usize, kc: usize| -> f64 {
            let rot = |x: &[f64], r: usize, col: usize| -> Vec<f64> {
                (0..c / 2)
                    .flat_map(|p| {
                        let a = rope_angle(c, p, r, col);
                        [
                            x[2 * p] * a.cos() - x[2 * p + 1] * a.sin(),
                            x[2 * p] * a.sin() + x[2 * p + 1] * a.cos(),
                        ]
                    })
                    .collect()
            };
            rot(&q, qr, qc)
                .iter()
                .zip(rot(&k, kr, kc))
                .map(|(a, b)| a * b)
                .sum()
        };
        let a = score(1, 2, 4, 7);
        let b = score(11, 5, 14, 10);
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        assert!(
            (score(0, 0, 0, 0) - q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>()).abs() < 1e-12
        );
    }
}
