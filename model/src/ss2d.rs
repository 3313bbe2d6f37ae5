//! SS2D (MODEL-SPEC §A.4.7): in_proj, depthwise 3×3 conv + SiLU, the four-direction selective
//! scan (our kernel, cross-scan and merge folded into its loads and stores), out_norm, the
//! SiLU(z) gate and out_proj. Parameter names follow the official state_dict.

use crate::ops::conv::{conv2d, linear_t, linear_t_per_direction};
use crate::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};
use crate::ShapeError;
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

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

        let xz = linear_t(x.reshape([bsz * l, c]), self.in_proj.val());
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
        let x_dbl = linear_t_per_direction(u.clone(), self.x_proj.val());
        let dts = x_dbl.clone().narrow(3, 0, r);
        let bs = x_dbl.clone().narrow(3, r, n);
        let cs = x_dbl.narrow(3, r + n, n);
        let delta = linear_t_per_direction(dts, self.dt_proj.val());
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
        Ok(linear_t(y, self.out_proj.val()).reshape([bsz, h, w, c]))
    }
}

/// LayerNorm over the last dimension (biased variance), as PyTorch computes it.
pub fn layer_norm(x: Tensor<2>, weight: Tensor<1>, bias: Tensor<1>) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    let xc = x - mean;
    let var = xc.clone().square().mean_dim(1);
    xc / (var + LN_EPS).sqrt() * weight.unsqueeze_dim(0) + bias.unsqueeze_dim(0)
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
    fn visit_params(&mut self, prefix: &str, out: &mut crate::nn::params::Visit<'_>) {
        use crate::nn::params::join;
        out(join(prefix, "in_proj.weight"), (&mut self.in_proj).into());
        out(
            join(prefix, "conv2d.weight"),
            (&mut self.conv_weight).into(),
        );
        out(join(prefix, "conv2d.bias"), (&mut self.conv_bias).into());
        out(join(prefix, "x_proj_weight"), (&mut self.x_proj).into());
        out(join(prefix, "dt_projs_weight"), (&mut self.dt_proj).into());
        out(join(prefix, "dt_projs_bias"), (&mut self.dt_bias).into());
        out(join(prefix, "A_logs"), (&mut self.a_logs).into());
        out(join(prefix, "Ds"), (&mut self.ds).into());
        out(
            join(prefix, "out_norm.weight"),
            (&mut self.norm_weight).into(),
        );
        out(join(prefix, "out_norm.bias"), (&mut self.norm_bias).into());
        out(join(prefix, "out_proj.weight"), (&mut self.out_proj).into());
    }
}
