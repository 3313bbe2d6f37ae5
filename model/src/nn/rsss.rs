//! RSSS block (MODEL-SPEC §A.4.6), SA-UMamba's encoder block, input and output (B, H, W, C):
//!   x1 = s1 ⊙ x  + SS2D(LN1(x))
//!   x2 = s2 ⊙ x1 + RFAConv(LN2(x1))      (RFAConv in NCHW)
//! with per-channel learnable scales s1 (`skip_scale`) and s2 (`skip_scale2`).

use super::params::{join, Loader, NamedParams, Visit};
use super::rfaconv::RfaConv;
use super::vm_unet::{DropPath, Norm};
use crate::ss2d::{Ss2d, Ss2dConfig};
use burn::module::Param;
use burn::tensor::Tensor;

#[derive(Debug, Clone)]
pub struct RsssBlock {
    pub ln_1: Norm,
    pub self_attention: Ss2d,
    pub ln_2: Norm,
    /// `conv_blk.cab.0`.
    pub conv: RfaConv,
    pub skip_scale: Param<Tensor<1>>,
    pub skip_scale2: Param<Tensor<1>>,
}

impl RsssBlock {
    pub fn load(w: &mut Loader, cfg: Ss2dConfig) -> Result<Self, String> {
        let c = cfg.dims;
        Ok(Self {
            ln_1: Norm::load(w, "ln_1", c)?,
            self_attention: Ss2d::load(cfg, &mut w.sub("self_attention"))?,
            ln_2: Norm::load(w, "ln_2", c)?,
            conv: RfaConv::load(&mut w.sub("conv_blk.cab.0"), c)?,
            skip_scale: w.param("skip_scale", [c])?,
            skip_scale2: w.param("skip_scale2", [c])?,
        })
    }

    /// `train` selects BatchNorm batch statistics (and updates the running ones).
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String> {
        self.forward_dropping(x, train, DropPath::default())
    }

    /// With stochastic depth on the SS2D branch only (not the RFAConv one).
    pub fn forward_dropping(
        &mut self,
        x: Tensor<4>,
        train: bool,
        drop: DropPath,
    ) -> Result<Tensor<4>, String> {
        let c = x.dims()[3];
        let s1 = self.skip_scale.val().reshape([1, 1, 1, c]);
        let s2 = self.skip_scale2.val().reshape([1, 1, 1, c]);
        let attn = self
            .self_attention
            .forward(self.ln_1.forward(x.clone()))
            .map_err(|e| e.to_string())?;
        let x1 = x * s1 + super::vm_unet::drop_path(attn, drop);
        let conv = self
            .conv
            .forward(self.ln_2.forward(x1.clone()).permute([0, 3, 1, 2]), train)?
            .permute([0, 2, 3, 1]);
        Ok(x1 * s2 + conv)
    }
}

impl NamedParams for RsssBlock {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        self.ln_1.named(prefix, "ln_1", out);
        self.self_attention
            .visit_params(&join(prefix, "self_attention"), out);
        self.ln_2.named(prefix, "ln_2", out);
        self.conv.visit_params(&join(prefix, "conv_blk.cab.0"), out);
        out(join(prefix, "skip_scale"), (&mut self.skip_scale).into());
        out(join(prefix, "skip_scale2"), (&mut self.skip_scale2).into());
    }
}
