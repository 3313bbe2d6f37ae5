//! 2-D convolution in f64 on the CPU, forward and both gradients, written from the definition
//! (one loop nest per formula, no im2col): the twin of the GPU kernels of `ops::conv`.
//! Layouts: x (B, Cin, H, W), weight (Cout, Cin / groups, K, K), output (B, Cout, Ho, Wo);
//! square K × K filters, one stride and one zero padding for both axes.

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub cin: usize,
    pub height: usize,
    pub width: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn weight_len(&self) -> usize {
        self.cout * (self.cin / self.groups) * self.k * self.k
    }

    /// Calls `f(b, co, ci, oy, ox, iy, ix, weight index)` for every product of the sum
    /// out[b, co, oy, ox] = Σ w[co, ci', ky, kx] · x[b, ci, iy, ix] that lies inside the image.
    #[allow(clippy::too_many_arguments)]
    fn each(&self, mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize)) {
        let (ho, wo) = (self.out_height(), self.out_width());
        let per_group_in = self.cin / self.groups;
        let per_group_out = self.cout / self.groups;
        for b in 0..self.batch {
            for co in 0..self.cout {
                let g = co / per_group_out;
                for cl in 0..per_group_in {
                    let ci = g * per_group_in + cl;
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            let wi = ((co * per_group_in + cl) * self.k + ky) * self.k + kx;
                            for oy in 0..ho {
                                let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                                if iy < 0 || iy >= self.height as isize {
                                    continue;
                                }
                                for ox in 0..wo {
                                    let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                                    if ix < 0 || ix >= self.width as isize {
                                        continue;
                                    }
                                    f(b, co, ci, oy, ox, iy as usize, ix as usize, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn x_index(&self, b: usize, ci: usize, iy: usize, ix: usize) -> usize {
        ((b * self.cin + ci) * self.height + iy) * self.width + ix
    }

    fn out_index(&self, b: usize, co: usize, oy: usize, ox: usize) -> usize {
        ((b * self.cout + co) * self.out_height() + oy) * self.out_width() + ox
    }
}

/// out = conv(x, weight) + bias.
pub fn forward(s: &ConvShape, x: &[f64], weight: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let (ho, wo) = (s.out_height(), s.out_width());
    let mut out = vec![0.0; s.batch * s.cout * ho * wo];
    if let Some(bias) = bias {
        for (i, o) in out.iter_mut().enumerate() {
            *o = bias[(i / (ho * wo)) % s.cout];
        }
    }
    s.each(|b, co, ci, oy, ox, iy, ix, wi| {
        out[s.out_index(b, co, oy, ox)] += weight[wi] * x[s.x_index(b, ci, iy, ix)];
    });
    out
}

/// Gradients of Σ dout · conv(x, weight) + bias: (dx, dweight, dbias).
pub fn backward(
    s: &ConvShape,
    x: &[f64],
    weight: &[f64],
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; s.weight_len()];
    let mut db = vec![0.0; s.cout];
    let plane = s.out_height() * s.out_width();
    for (i, d) in dout.iter().enumerate() {
        db[(i / plane) % s.cout] += d;
    }
    s.each(|b, co, ci, oy, ox, iy, ix, wi| {
        let d = dout[s.out_index(b, co, oy, ox)];
        let xi = s.x_index(b, ci, iy, ix);
        dx[xi] += weight[wi] * d;
        dw[wi] += x[xi] * d;
    });
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_made_case() {
        // One 3×3 image, one 2×2 filter, stride 1, no padding: a 2×2 output.
        let s = ConvShape {
            batch: 1,
            cin: 1,
            height: 3,
            width: 3,
            cout: 1,
            k: 2,
            stride: 1,
            pad: 0,
            groups: 1,
        };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let w = [1.0, 0.0, 0.0, -1.0];
        assert_eq!(forward(&s, &x, &w, Some(&[0.5])), vec![-3.5; 4]);
        let (dx, dw, db) = backward(&s, &x, &w, &[1.0; 4]);
        assert_eq!(dx, vec![1.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, -1.0]);
        assert_eq!(dw, vec![12.0, 16.0, 24.0, 28.0]);
        assert_eq!(db, vec![4.0]);
    }

    #[test]
    fn padding_and_stride() {
        // A 4×4 ramp, one 3×3 box filter, padding 1, stride 2: sums of the 3×3 windows centred
        // on (0,0), (0,2), (2,0), (2,2), cut by the border.
        let s = ConvShape {
            batch: 1,
            cin: 1,
            height: 4,
            width: 4,
            cout: 1,
            k: 3,
            stride: 2,
            pad: 1,
            groups: 1,
        };
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        let out = forward(&s, &x, &[1.0; 9], None);
        assert_eq!(out, vec![10.0, 24.0, 51.0, 90.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let s = ConvShape {
            batch: 2,
            cin: 4,
            height: 5,
            width: 4,
            cout: 6,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 2,
        };
        let mut state = 7u64;
        let mut rnd = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect()
        };
        let x = rnd(s.batch * s.cin * s.height * s.width);
        let w = rnd(s.weight_len());
        let bias = rnd(s.cout);
        let dout = rnd(s.batch * s.cout * s.out_height() * s.out_width());
        let loss = |x: &[f64], w: &[f64], bias: &[f64]| -> f64 {
            forward(&s, x, w, Some(bias))
                .iter()
                .zip(&dout)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dx, dw, db) = backward(&s, &x, &w, &dout);
        let h = 1e-6;
        let fd = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
            let (mut up, mut down) = (v.to_vec(), v.to_vec());
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        };
        for i in [0, 17, x.len() - 1] {
            let g = fd(&x, i, &|v| loss(v, &w, &bias));
            assert!((g - dx[i]).abs() < 1e-6, "dx[{i}] {} vs {g}", dx[i]);
        }
        for i in [0, 13, w.len() - 1] {
            let g = fd(&w, i, &|v| loss(&x, v, &bias));
            assert!((g - dw[i]).abs() < 1e-6, "dw[{i}] {} vs {g}", dw[i]);
        }
        for (i, d) in db.iter().enumerate() {
            let g = fd(&bias, i, &|v| loss(&x, &w, v));
            assert!((g - d).abs() < 1e-6, "db[{i}] {d} vs {g}");
        }
    }
}
