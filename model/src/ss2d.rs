//! SS2D (MODEL-SPEC §A.4.7): in_proj, depthwise 3×3 conv + SiLU, the four-direction selective
//! scan (our kernel, cross-scan and merge folded into its loads and stores), out_norm, the
//! SiLU(z) gate and out_proj. Parameter names follow the official state_dict.

use crate::fixtures::{rel_l2, tensor, values, Comparison, Fixture, Tolerance};
use crate::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};
use crate::ShapeError;
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

/// Sizes of an SS2D block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ss2dConfig {
    /// Model width C.
    pub dims: usize,
    /// States N.
    pub d_state: usize,
    /// Inner width E = expand · C.
    pub expand: usize,
    /// Rank R of the Δ projection (official: ⌈C / 16⌉).
    pub dt_rank: usize,
}

impl Ss2dConfig {
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            d_state: 16,
            expand: 2,
            dt_rank: dims.div_ceil(16),
        }
    }
    pub fn inner(&self) -> usize {
        self.expand * self.dims
    }
}

/// Number of scan directions.
pub const DIRECTIONS: usize = 4;
const LN_EPS: f64 = 1e-5;

/// The SS2D block; input and output (B, H, W, C).
#[derive(Module, Debug)]
pub struct Ss2d {
    /// `in_proj.weight` (2E, C).
    pub in_proj: Param<Tensor<2>>,
    /// `conv2d.weight` (E, 1, 3, 3) and `conv2d.bias` (E).
    pub conv_weight: Param<Tensor<4>>,
    pub conv_bias: Param<Tensor<1>>,
    /// `x_proj_weight` (4, R + 2N, E).
    pub x_proj: Param<Tensor<3>>,
    /// `dt_projs_weight` (4, E, R) and `dt_projs_bias` (4, E).
    pub dt_proj: Param<Tensor<3>>,
    pub dt_bias: Param<Tensor<2>>,
    /// `A_logs` (4E, N), `Ds` (4E).
    pub a_logs: Param<Tensor<2>>,
    pub ds: Param<Tensor<1>>,
    /// `out_norm.weight`, `out_norm.bias` (E).
    pub norm_weight: Param<Tensor<1>>,
    pub norm_bias: Param<Tensor<1>>,
    /// `out_proj.weight` (C, E).
    pub out_proj: Param<Tensor<2>>,
}

impl Ss2d {
    /// Random weights of the right shapes (S4D-real A, D = 1, LN 1/0); used by tests and
    /// benchmarks. Networks use their own initialisation.
    pub fn random(cfg: Ss2dConfig, device: &Device) -> Self {
        let (c, e, n, r) = (cfg.dims, cfg.inner(), cfg.d_state, cfg.dt_rank);
        fn normal<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
            Tensor::random(shape, Distribution::Normal(0.0, std), device)
        }
        let a_logs: Vec<f32> = (0..DIRECTIONS * e)
            .flat_map(|_| (1..=n).map(|i| (i as f32).ln()))
            .collect();
        Self {
            in_proj: Param::from_tensor(normal([2 * e, c], 0.02, device)),
            conv_weight: Param::from_tensor(normal([e, 1, 3, 3], 0.3, device)),
            conv_bias: Param::from_tensor(normal([e], 0.1, device)),
            x_proj: Param::from_tensor(normal([DIRECTIONS, r + 2 * n, e], 0.1, device)),
            dt_proj: Param::from_tensor(normal([DIRECTIONS, e, r], 0.3, device)),
            dt_bias: Param::from_tensor(normal([DIRECTIONS, e], 0.5, device).sub_scalar(3.0)),
            a_logs: Param::from_tensor(
                Tensor::<1>::from_floats(a_logs.as_slice(), device).reshape([DIRECTIONS * e, n]),
            ),
            ds: Param::from_tensor(Tensor::ones([DIRECTIONS * e], device)),
            norm_weight: Param::from_tensor(Tensor::ones([e], device)),
            norm_bias: Param::from_tensor(Tensor::zeros([e], device)),
            out_proj: Param::from_tensor(normal([c, e], 0.02, device)),
        }
    }

    /// (B, H, W, C) → (B, H, W, C).
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>, ShapeError> {
        let [bsz, h, w, c] = x.dims();
        let [two_e, c_w] = self.in_proj.val().dims();
        if c != c_w {
            return Err(ShapeError::new(
                "SS2D",
                format!("input has {c} channels; the block expects {c_w}"),
            ));
        }
        let e = two_e / 2;
        let [_, rn2, _] = self.x_proj.val().dims();
        let [_, n] = self.a_logs.val().dims();
        let r = rn2 - 2 * n;
        let l = h * w;

        let xz = x
            .reshape([bsz * l, c])
            .matmul(self.in_proj.val().transpose());
        let xa = xz.clone().narrow(1, 0, e);
        let z = xz.narrow(1, e, e);
        // Depthwise conv in NCHW, back to channels-last (B, 1, L, E) for the scan.
        let xa = xa.reshape([bsz, h, w, e]).permute([0, 3, 1, 2]);
        let xa = conv2d(
            xa,
            self.conv_weight.val(),
            Some(self.conv_bias.val()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], e),
        );
        let u = silu(xa).permute([0, 2, 3, 1]).reshape([bsz, 1, l, e]);
        // Per-direction projections, in map order (the scan walks each direction's order).
        let x_dbl = u
            .clone()
            .matmul(self.x_proj.val().swap_dims(1, 2).unsqueeze_dim::<4>(0));
        let dts = x_dbl.clone().narrow(3, 0, r);
        let bs = x_dbl.clone().narrow(3, r, n);
        let cs = x_dbl.narrow(3, r + n, n);
        let delta = dts.matmul(self.dt_proj.val().swap_dims(1, 2).unsqueeze_dim::<4>(0));
        let a = self.a_logs.val().exp().neg();
        let y = selective_scan(
            ScanInput {
                u,
                delta,
                a,
                b: bs,
                c: cs,
                d: self.ds.val(),
                bias: self.dt_bias.val().reshape([DIRECTIONS * e]),
            },
            ScanOrder::CrossScan {
                height: h,
                width: w,
            },
            ScanOptions::default(),
        )?;
        let y = y.sum_dim(1).reshape([bsz * l, e]);
        let y = layer_norm(y, self.norm_weight.val(), self.norm_bias.val());
        let y = y * silu(z);
        Ok(y.matmul(self.out_proj.val().transpose())
            .reshape([bsz, h, w, c]))
    }
}

/// LayerNorm over the last dimension (biased variance), as PyTorch computes it.
pub fn layer_norm(x: Tensor<2>, weight: Tensor<1>, bias: Tensor<1>) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    let xc = x - mean;
    let var = xc.clone().square().mean_dim(1);
    xc / (var + LN_EPS).sqrt() * weight.unsqueeze_dim(0) + bias.unsqueeze_dim(0)
}

/// `medseg check-fixtures` check for `ss2d*` files: load `param.*` by official name, run
/// forward and backward of `sum(out · dy)`, compare `out` and every `grad.*`.
pub fn check_fixture(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, String> {
    let ad = device.clone().autodiff();
    let x = f.shaped("x", 4)?;
    let dims = x.shape.clone();
    let load = |name: &str| -> Result<(Vec<usize>, Vec<f64>), String> {
        let t = f.get(&format!("param.{name}"))?;
        Ok((t.shape.clone(), t.data.clone()))
    };
    fn up<const D: usize>(
        t: (Vec<usize>, Vec<f64>),
        ad: &Device,
        name: &str,
    ) -> Result<Tensor<D>, String> {
        let shape: [usize; D] =
            t.0.clone()
                .try_into()
                .map_err(|_| format!("param.{name} has shape {:?}; rank {D} expected", t.0))?;
        Ok(tensor(t.1, shape, ad).require_grad())
    }
    let names = [
        "in_proj.weight",
        "conv2d.weight",
        "conv2d.bias",
        "x_proj_weight",
        "dt_projs_weight",
        "dt_projs_bias",
        "A_logs",
        "Ds",
        "out_norm.weight",
        "out_norm.bias",
        "out_proj.weight",
    ];
    let block = Ss2d {
        in_proj: Param::from_tensor(up::<2>(load(names[0])?, &ad, names[0])?),
        conv_weight: Param::from_tensor(up::<4>(load(names[1])?, &ad, names[1])?),
        conv_bias: Param::from_tensor(up::<1>(load(names[2])?, &ad, names[2])?),
        x_proj: Param::from_tensor(up::<3>(load(names[3])?, &ad, names[3])?),
        dt_proj: Param::from_tensor(up::<3>(load(names[4])?, &ad, names[4])?),
        dt_bias: Param::from_tensor(up::<2>(load(names[5])?, &ad, names[5])?),
        a_logs: Param::from_tensor(up::<2>(load(names[6])?, &ad, names[6])?),
        ds: Param::from_tensor(up::<1>(load(names[7])?, &ad, names[7])?),
        norm_weight: Param::from_tensor(up::<1>(load(names[8])?, &ad, names[8])?),
        norm_bias: Param::from_tensor(up::<1>(load(names[9])?, &ad, names[9])?),
        out_proj: Param::from_tensor(up::<2>(load(names[10])?, &ad, names[10])?),
    };
    let shape4: [usize; 4] = [dims[0], dims[1], dims[2], dims[3]];
    let xt = tensor(x.data.clone(), shape4, &ad).require_grad();
    let dy = tensor(f.get("dy")?.data.clone(), shape4, &ad);
    let out = block.forward(xt.clone()).map_err(|e| e.to_string())?;
    let grads = (out.clone() * dy).sum().backward();
    let mut cmp = vec![Comparison {
        name: "out".into(),
        error: rel_l2(&values(out.inner())?, &f.get("out")?.data),
        tolerance: Tolerance::Relative(1e-5),
    }];
    let mut grad_of = |name: &str, g: Option<Vec<f64>>| -> Result<(), String> {
        let g = g.ok_or_else(|| format!("no gradient reached {name}"))?;
        cmp.push(Comparison {
            name: format!("grad.{name}"),
            error: rel_l2(&g, &f.get(&format!("grad.{name}"))?.data),
            tolerance: Tolerance::Relative(1e-4),
        });
        Ok(())
    };
    fn gv<const D: usize>(
        p: &Param<Tensor<D>>,
        grads: &burn::tensor::Gradients,
    ) -> Option<Vec<f64>> {
        p.val().grad(grads).and_then(|g| values(g).ok())
    }
    grad_of("x", xt.grad(&grads).and_then(|g| values(g).ok()))?;
    grad_of(names[0], gv(&block.in_proj, &grads))?;
    grad_of(names[1], gv(&block.conv_weight, &grads))?;
    grad_of(names[2], gv(&block.conv_bias, &grads))?;
    grad_of(names[3], gv(&block.x_proj, &grads))?;
    grad_of(names[4], gv(&block.dt_proj, &grads))?;
    grad_of(names[5], gv(&block.dt_bias, &grads))?;
    grad_of(names[6], gv(&block.a_logs, &grads))?;
    grad_of(names[7], gv(&block.ds, &grads))?;
    grad_of(names[8], gv(&block.norm_weight, &grads))?;
    grad_of(names[9], gv(&block.norm_bias, &grads))?;
    grad_of(names[10], gv(&block.out_proj, &grads))?;
    Ok(cmp)
}

impl Ss2d {
    /// Weights under the official names (`in_proj.weight`, `A_logs`, …) from `w`.
    pub fn load(cfg: Ss2dConfig, w: &mut crate::nn::params::Loader) -> Result<Self, String> {
        let (c, e, n, r) = (cfg.dims, cfg.inner(), cfg.d_state, cfg.dt_rank);
        Ok(Self {
            in_proj: w.param("in_proj.weight", [2 * e, c])?,
            conv_weight: w.param("conv2d.weight", [e, 1, 3, 3])?,
            conv_bias: w.param("conv2d.bias", [e])?,
            x_proj: w.param("x_proj_weight", [DIRECTIONS, r + 2 * n, e])?,
            dt_proj: w.param("dt_projs_weight", [DIRECTIONS, e, r])?,
            dt_bias: w.param("dt_projs_bias", [DIRECTIONS, e])?,
            a_logs: w.param("A_logs", [DIRECTIONS * e, n])?,
            ds: w.param("Ds", [DIRECTIONS * e])?,
            norm_weight: w.param("out_norm.weight", [e])?,
            norm_bias: w.param("out_norm.bias", [e])?,
            out_proj: w.param("out_proj.weight", [c, e])?,
        })
    }
}

impl crate::nn::params::NamedParams for Ss2d {
    fn named_params(&self, prefix: &str, out: &mut Vec<(String, crate::nn::params::AnyParam)>) {
        use crate::nn::params::join;
        out.push((join(prefix, "in_proj.weight"), (&self.in_proj).into()));
        out.push((join(prefix, "conv2d.weight"), (&self.conv_weight).into()));
        out.push((join(prefix, "conv2d.bias"), (&self.conv_bias).into()));
        out.push((join(prefix, "x_proj_weight"), (&self.x_proj).into()));
        out.push((join(prefix, "dt_projs_weight"), (&self.dt_proj).into()));
        out.push((join(prefix, "dt_projs_bias"), (&self.dt_bias).into()));
        out.push((join(prefix, "A_logs"), (&self.a_logs).into()));
        out.push((join(prefix, "Ds"), (&self.ds).into()));
        out.push((join(prefix, "out_norm.weight"), (&self.norm_weight).into()));
        out.push((join(prefix, "out_norm.bias"), (&self.norm_bias).into()));
        out.push((join(prefix, "out_proj.weight"), (&self.out_proj).into()));
    }
}
