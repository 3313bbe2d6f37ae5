//! Sequential f64 selective scan (MODEL-SPEC §A.5), forward and backward, in the kernels'
//! layouts: u (B, Ku, L, E) with Ku = 1 (shared by all directions) or K; delta and y
//! (B, K, L, E); A (K·E, N); B and C (B, K, L, N); D and bias (K·E). Positions are spatial:
//! direction k visits them in the order of [`ScanOrder::position`].

pub use crate::ops::scan::ScanOrder;

/// Sizes of one scan problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDims {
    pub batch: usize,
    pub dirs: usize,
    /// 1 when u is shared by all directions, else `dirs`.
    pub u_dirs: usize,
    pub channels: usize,
    pub len: usize,
    pub states: usize,
}

/// Inputs of the scan, f64, in the layouts of the module docs.
#[derive(Debug, Clone)]
pub struct ScanInputs {
    pub dims: ScanDims,
    pub order: ScanOrder,
    pub u: Vec<f64>,
    pub delta: Vec<f64>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub c: Vec<f64>,
    pub d: Vec<f64>,
    pub bias: Vec<f64>,
}

/// Gradients of `sum(y * dy)` with respect to every input.
#[derive(Debug, Clone)]
pub struct ScanGrads {
    pub du: Vec<f64>,
    pub ddelta: Vec<f64>,
    pub da: Vec<f64>,
    pub db: Vec<f64>,
    pub dc: Vec<f64>,
    pub dd: Vec<f64>,
    pub dbias: Vec<f64>,
}

fn softplus(s: f64) -> f64 {
    if s > 20.0 {
        s
    } else {
        s.exp().ln_1p()
    }
}

fn softplus_grad(s: f64) -> f64 {
    if s > 20.0 {
        1.0
    } else {
        1.0 / (1.0 + (-s).exp())
    }
}

struct Index {
    dims: ScanDims,
}

impl Index {
    fn u(&self, b: usize, k: usize, s: usize, e: usize) -> usize {
        let ku = if self.dims.u_dirs == 1 { 0 } else { k };
        ((b * self.dims.u_dirs + ku) * self.dims.len + s) * self.dims.channels + e
    }
    fn seq(&self, b: usize, k: usize, s: usize, e: usize) -> usize {
        ((b * self.dims.dirs + k) * self.dims.len + s) * self.dims.channels + e
    }
    fn state(&self, b: usize, k: usize, s: usize, n: usize) -> usize {
        ((b * self.dims.dirs + k) * self.dims.len + s) * self.dims.states + n
    }
}

impl ScanInputs {
    /// Check that every buffer has the length its dims imply.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.dims;
        let want = [
            ("u", self.u.len(), d.batch * d.u_dirs * d.len * d.channels),
            (
                "delta",
                self.delta.len(),
                d.batch * d.dirs * d.len * d.channels,
            ),
            ("A", self.a.len(), d.dirs * d.channels * d.states),
            ("B", self.b.len(), d.batch * d.dirs * d.len * d.states),
            ("C", self.c.len(), d.batch * d.dirs * d.len * d.states),
            ("D", self.d.len(), d.dirs * d.channels),
            ("bias", self.bias.len(), d.dirs * d.channels),
        ];
        for (name, have, need) in want {
            if have != need {
                return Err(format!("{name} has {have} values, {need} expected"));
            }
        }
        if d.u_dirs != 1 && d.u_dirs != d.dirs {
            return Err(format!(
                "u has {} directions, 1 or {} expected",
                d.u_dirs, d.dirs
            ));
        }
        Ok(())
    }

    /// y (B, K, L, E).
    pub fn forward(&self) -> Vec<f64> {
        let d = self.dims;
        let ix = Index { dims: d };
        let mut y = vec![0.0; d.batch * d.dirs * d.len * d.channels];
        for b in 0..d.batch {
            for k in 0..d.dirs {
                for e in 0..d.channels {
                    let ch = k * d.channels + e;
                    let mut h = vec![0.0; d.states];
                    for pos in 0..d.len {
                        let s = self.order.position(k, pos, d.len);
                        let uv = self.u[ix.u(b, k, s, e)];
                        let dt = softplus(self.delta[ix.seq(b, k, s, e)] + self.bias[ch]);
                        let mut acc = self.d[ch] * uv;
                        for (n, hn) in h.iter_mut().enumerate() {
                            let abar = (dt * self.a[ch * d.states + n]).exp();
                            *hn = abar * *hn + dt * self.b[ix.state(b, k, s, n)] * uv;
                            acc += self.c[ix.state(b, k, s, n)] * *hn;
                        }
                        y[ix.seq(b, k, s, e)] = acc;
                    }
                }
            }
        }
        y
    }

    /// Gradients of `sum(y * dy)`, dy in y's layout.
    pub fn backward(&self, dy: &[f64]) -> ScanGrads {
        let d = self.dims;
        let ix = Index { dims: d };
        let mut g = ScanGrads {
            du: vec![0.0; self.u.len()],
            ddelta: vec![0.0; self.delta.len()],
            da: vec![0.0; self.a.len()],
            db: vec![0.0; self.b.len()],
            dc: vec![0.0; self.c.len()],
            dd: vec![0.0; self.d.len()],
            dbias: vec![0.0; self.bias.len()],
        };
        let ns = d.states;
        for b in 0..d.batch {
            for k in 0..d.dirs {
                for e in 0..d.channels {
                    let ch = k * d.channels + e;
                    // Forward, keeping every state (the reference can afford it).
                    let mut hs = vec![0.0; (d.len + 1) * ns];
                    for pos in 0..d.len {
                        let s = self.order.position(k, pos, d.len);
                        let uv = self.u[ix.u(b, k, s, e)];
                        let dt = softplus(self.delta[ix.seq(b, k, s, e)] + self.bias[ch]);
                        for n in 0..ns {
                            let abar = (dt * self.a[ch * ns + n]).exp();
                            hs[(pos + 1) * ns + n] =
                                abar * hs[pos * ns + n] + dt * self.b[ix.state(b, k, s, n)] * uv;
                        }
                    }
                    // Adjoint walk.
                    let mut lam_next = vec![0.0; ns];
                    let mut abar_next = vec![0.0; ns];
                    for pos in (0..d.len).rev() {
                        let s = self.order.position(k, pos, d.len);
                        let uv = self.u[ix.u(b, k, s, e)];
                        let raw = self.delta[ix.seq(b, k, s, e)] + self.bias[ch];
                        let dt = softplus(raw);
                        let gy = dy[ix.seq(b, k, s, e)];
                        g.dd[ch] += gy * uv;
                        let mut ddt = 0.0;
                        let mut du = self.d[ch] * gy;
                        for n in 0..ns {
                            let an = self.a[ch * ns + n];
                            let abar = (dt * an).exp();
                            let si = ix.state(b, k, s, n);
                            let hprev = hs[pos * ns + n];
                            let h = hs[(pos + 1) * ns + n];
                            let lam = gy * self.c[si]
                                + if pos + 1 < d.len {
                                    abar_next[n] * lam_next[n]
                                } else {
                                    0.0
                                };
                            g.dc[si] += gy * h;
                            g.db[si] += lam * dt * uv;
                            du += dt * lam * self.b[si];
                            ddt += lam * (an * abar * hprev + self.b[si] * uv);
                            g.da[ch * ns + n] += lam * dt * abar * hprev;
                            lam_next[n] = lam;
                            abar_next[n] = abar;
                        }
                        g.du[ix.u(b, k, s, e)] += du;
                        let ds = ddt * softplus_grad(raw);
                        g.ddelta[ix.seq(b, k, s, e)] = ds;
                        g.dbias[ch] += ds;
                    }
                }
            }
        }
        g
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

    fn problem(order: ScanOrder, dims: ScanDims, seed: u64) -> ScanInputs {
        let mut s = seed;
        let mut v = |n: usize, scale: f64, off: f64| {
            (0..n)
                .map(|_| off + scale * lcg(&mut s))
                .collect::<Vec<_>>()
        };
        ScanInputs {
            dims,
            order,
            u: v(
                dims.batch * dims.u_dirs * dims.len * dims.channels,
                1.0,
                0.0,
            ),
            delta: v(dims.batch * dims.dirs * dims.len * dims.channels, 1.0, -0.5),
            a: v(dims.dirs * dims.channels * dims.states, 0.5, -1.0),
            b: v(dims.batch * dims.dirs * dims.len * dims.states, 1.0, 0.0),
            c: v(dims.batch * dims.dirs * dims.len * dims.states, 1.0, 0.0),
            d: v(dims.dirs * dims.channels, 1.0, 0.0),
            bias: v(dims.dirs * dims.channels, 0.3, 0.0),
        }
    }

    /// The reference backward agrees with central finite differences of its forward.
    #[test]
    fn backward_matches_finite_differences() {
        let dims = ScanDims {
            batch: 1,
            dirs: 4,
            u_dirs: 1,
            channels: 2,
            len: 6,
            states: 3,
        };
        let p = problem(
            ScanOrder::CrossScan {
                height: 2,
                width: 3,
            },
            dims,
            7,
        );
        p.validate().unwrap();
        let mut seed = 99;
        let dy: Vec<f64> = (0..p.delta.len()).map(|_| lcg(&mut seed)).collect();
        let g = p.backward(&dy);
        let loss = |q: &ScanInputs| q.forward().iter().zip(&dy).map(|(a, b)| a * b).sum::<f64>();
        let eps = 1e-6;
        type Field = fn(&mut ScanInputs) -> &mut Vec<f64>;
        let fields: [(&str, Field, &Vec<f64>); 7] = [
            ("u", |q| &mut q.u, &g.du),
            ("delta", |q| &mut q.delta, &g.ddelta),
            ("a", |q| &mut q.a, &g.da),
            ("b", |q| &mut q.b, &g.db),
            ("c", |q| &mut q.c, &g.dc),
            ("d", |q| &mut q.d, &g.dd),
            ("bias", |q| &mut q.bias, &g.dbias),
        ];
        for (name, field, grad) in fields {
            assert_eq!(field(&mut p.clone()).len(), grad.len(), "{name}");
            for (i, &gi) in grad.iter().enumerate() {
                let mut hi = p.clone();
                field(&mut hi)[i] += eps;
                let mut lo = p.clone();
                field(&mut lo)[i] -= eps;
                let fd = (loss(&hi) - loss(&lo)) / (2.0 * eps);
                assert!(
                    (fd - gi).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{name}[{i}]: fd {fd} vs {gi}"
                );
            }
        }
    }

    #[test]
    fn cross_scan_visits_every_position_once_per_direction() {
        let order = ScanOrder::CrossScan {
            height: 3,
            width: 5,
        };
        for k in 0..4 {
            let mut seen = vec![0; 15];
            for pos in 0..15 {
                seen[order.position(k, pos, 15)] += 1;
            }
            assert!(seen.iter().all(|&c| c == 1), "direction {k}: {seen:?}");
        }
        // Column-major: the second element visited is the one below the first.
        assert_eq!(order.position(1, 1, 15), 5);
        assert_eq!(order.position(3, 0, 15), 14);
    }
}
