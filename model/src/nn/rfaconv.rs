//! RFAConv (SA-UMamba variant, MODEL-SPEC §A.4.8), NCHW, with BatchNorm in train (batch
//! statistics) or eval (running statistics) mode. The receptive-field attention — grouped 1×1
//! logits of the pooled input, softmax over the nine taps, weighting of the nine features — is
//! our WGSL kernel (`ops::rfa`, forward and backward); pooling, the grouped 3×3 feature
//! convolution, the BatchNorms and the final convolution are burn ops. Its f64 twin is
//! `reference::rfaconv`. The final stride-3 conv over the rearranged map is the equivalent
//! per-pixel 1×1 conv over the 9C weighted features (no 3H×3W map is built).

use super::params::{join, Loader, NamedParams, Visit};
use crate::ops::conv::conv2d;
use crate::ops::rfa::rfa_attention;
use burn::module::Param;
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AvgPoolOptions, ConvOptions};
use burn::tensor::Tensor;

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// BatchNorm over the channels of NCHW tensors.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
}

impl BatchNorm2d {
    pub fn load(w: &mut Loader, name: &str, n: usize) -> Result<Self, String> {
        let buffer = |w: &mut Loader, b: &str| -> Result<Tensor<1>, String> {
            w.buffer(&format!("{name}.{b}"), [n])
        };
        Ok(Self {
            weight: w.param(&format!("{name}.weight"), [n])?,
            bias: w.param(&format!("{name}.bias"), [n])?,
            running_mean: buffer(w, "running_mean")?,
            running_var: buffer(w, "running_var")?,
        })
    }

    /// Normalise; in train mode with the batch's statistics, updating the running ones
    /// (unbiased variance, momentum 0.1) as PyTorch does.
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Tensor<4> {
        self.forward_biased(x, None, train)
    }

    /// `BN(x + bias)` for a per-channel `bias` of the layer in front. In train mode the bias
    /// cancels in the centring; it is added as `bias − bias` so that its gradient is exactly
    /// zero (the true value) instead of float round-off, and it still enters the running mean.
    pub fn forward_biased(
        &mut self,
        x: Tensor<4>,
        bias: Option<Tensor<1>>,
        train: bool,
    ) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let bias4 = bias.map(|t| t.reshape([1, c, 1, 1]));
        let centred = if train {
            let flat = x.clone().swap_dims(0, 1).reshape([c, b * h * w]);
            let mean = flat.mean_dim(1).reshape([1, c, 1, 1]);
            let mut centred = x - mean.clone();
            let mut batch_mean = mean.detach();
            if let Some(bb) = &bias4 {
                centred = centred + (bb.clone() - bb.clone());
                batch_mean = batch_mean + bb.clone().detach();
            }
            let var = centred
                .clone()
                .square()
                .swap_dims(0, 1)
                .reshape([c, b * h * w])
                .mean_dim(1);
            let count = (b * h * w) as f64;
            let unbiased = var
                .clone()
                .detach()
                .mul_scalar(count / (count - 1.0).max(1.0));
            self.running_mean = self.running_mean.clone().mul_scalar(1.0 - BN_MOMENTUM)
                + batch_mean.reshape([c]).mul_scalar(BN_MOMENTUM);
            self.running_var = self.running_var.clone().mul_scalar(1.0 - BN_MOMENTUM)
                + unbiased.reshape([c]).mul_scalar(BN_MOMENTUM);
            centred / (var.reshape([1, c, 1, 1]) + BN_EPS).sqrt()
        } else {
            let x = match &bias4 {
                Some(bb) => x + bb.clone(),
                None => x,
            };
            (x - self.running_mean.clone().reshape([1, c, 1, 1]))
                / (self.running_var.clone().reshape([1, c, 1, 1]) + BN_EPS).sqrt()
        };
        centred * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }

    fn named(&mut self, prefix: &str, name: &str, out: &mut Visit<'_>) {
        out(
            join(prefix, &format!("{name}.weight")),
            (&mut self.weight).into(),
        );
        out(
            join(prefix, &format!("{name}.bias")),
            (&mut self.bias).into(),
        );
    }
}

/// RFAConv(C → C, k = 3, stride 1) + BatchNorm + ReLU.
#[derive(Debug, Clone)]
pub struct RfaConv {
    pub channels: usize,
    /// `get_weight.1.weight` (9C, 1, 1, 1).
    pub alpha: Param<Tensor<4>>,
    /// `generate_feature.0.weight` (9C, 1, 3, 3) and its BatchNorm `generate_feature.1`.
    pub beta: Param<Tensor<4>>,
    pub bn_feature: BatchNorm2d,
    /// `conv.0.weight` (C, C, 3, 3), `conv.0.bias` and the BatchNorm `conv.1`.
    pub conv_weight: Param<Tensor<4>>,
    pub conv_bias: Param<Tensor<1>>,
    pub bn_out: BatchNorm2d,
}

impl RfaConv {
    pub fn load(w: &mut Loader, c: usize) -> Result<Self, String> {
        Ok(Self {
            channels: c,
            alpha: w.param("get_weight.1.weight", [9 * c, 1, 1, 1])?,
            beta: w.param("generate_feature.0.weight", [9 * c, 1, 3, 3])?,
            bn_feature: BatchNorm2d::load(w, "generate_feature.1", 9 * c)?,
            conv_weight: w.param("conv.0.weight", [c, c, 3, 3])?,
            conv_bias: w.param("conv.0.bias", [c])?,
            bn_out: BatchNorm2d::load(w, "conv.1", c)?,
        })
    }

    /// (B, C, H, W) → (B, C, H, W).
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String> {
        let [b, c, h, w] = x.dims();
        let pooled = avg_pool2d(
            x.clone(),
            AvgPoolOptions::new([3, 3])
                .with_stride([1, 1])
                .with_padding([1, 1])
                .with_count_include_pad(true),
        );
        let feat = conv2d(
            x,
            self.beta.val(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], c),
        );
        let feat = relu(self.bn_feature.forward(feat, train));
        // The grouped 1×1 logits, their softmax over the nine taps and the weighting of the
        // features: one WGSL kernel, forward and backward.
        let g = rfa_attention(pooled, self.alpha.val().reshape([9 * c]), feat)
            .map_err(|e| e.to_string())?;
        let w1 = self.conv_weight.val().reshape([c, 9 * c, 1, 1]);
        let pre = conv2d(g, w1, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        debug_assert_eq!(pre.dims(), [b, c, h, w]);
        Ok(relu(self.bn_out.forward_biased(
            pre,
            Some(self.conv_bias.val()),
            train,
        )))
    }
}

impl RfaConv {
    /// The BatchNorm running statistics under their official names.
    pub fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor<1>)> {
        let mut out = Vec::new();
        for (bn, name) in [
            (&self.bn_feature, "generate_feature.1"),
            (&self.bn_out, "conv.1"),
        ] {
            out.push((
                join(prefix, &format!("{name}.running_mean")),
                bn.running_mean.clone(),
            ));
            out.push((
                join(prefix, &format!("{name}.running_var")),
                bn.running_var.clone(),
            ));
        }
        out
    }
}

impl NamedParams for RfaConv {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        out(
            join(prefix, "get_weight.1.weight"),
            (&mut self.alpha).into(),
        );
        out(
            join(prefix, "generate_feature.0.weight"),
            (&mut self.beta).into(),
        );
        self.bn_feature.named(prefix, "generate_feature.1", out);
        out(
            join(prefix, "conv.0.weight"),
            (&mut self.conv_weight).into(),
        );
        out(join(prefix, "conv.0.bias"), (&mut self.conv_bias).into());
        self.bn_out.named(prefix, "conv.1", out);
    }
}
