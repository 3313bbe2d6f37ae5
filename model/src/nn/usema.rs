//! USEMA (MODEL-SPEC §B.3–B.5): a 2-D U-Net whose encoder stages are two residual blocks and a
//! SEMA block (windowed softmax attention + the global mean of V, with RoPE, LePE and CPE, in
//! MLLA's block structure), full softmax attention at the bottleneck, a decoder of transposed
//! convolutions, concatenated skips and residual blocks, and a segmentation head at every
//! decoder resolution (deep supervision). Where the paper is silent the defaults are the ones
//! MODEL-SPEC marks [INF]; each is a field of [`UsemaConfig`].
//!
//! Parameter names are ours (no official code exists): `stem`, `encoder.{s}.res.{0,1}`,
//! `encoder.{s}.sema`, `decoder.{j}.up`, `decoder.{j}.res.{k}`, `decoder.{j}.head`, with
//! decoder stage j = 0 the deepest, as in nnU-Net.

use super::params::{join, Loader, NamedParams, Visit};
use crate::ops::conv::conv2d;
use crate::ops::sema::sema;
use crate::ss2d::layer_norm;
use burn::module::Param;
use burn::tensor::activation::{gelu, leaky_relu, log_softmax, silu, softmax};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Slice, Tensor};

/// Sizes and choices of a USEMA network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsemaConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Features per stage, full resolution first; stage s > 0 halves the map.
    pub features: Vec<usize>,
    /// SEMA window side (16 or 32 in the paper); clamped to the map at deep stages.
    pub window: usize,
    pub head_dim: usize,
    /// SEMA's global mean-of-V term (false: the paper's ablation).
    pub mean_term: bool,
    /// 2-D RoPE on queries and keys.
    pub rope: bool,
    /// Residual blocks per decoder stage.
    pub decoder_blocks: usize,
}

impl UsemaConfig {
    /// MODEL-SPEC §B.4.1's recommended default for `size`² inputs: stages while the map stays
    /// ≥ 4 px (nnU-Net's rule; 7 for 256²), features min(32·2^s, 512), window 16, head dim
    /// 32, mean term and RoPE on, one residual block per decoder stage.
    pub fn default_for(size: usize, in_channels: usize, num_classes: usize) -> Self {
        let mut stages = 1;
        let mut side = size;
        while side.is_multiple_of(2) && side / 2 >= 4 {
            side /= 2;
            stages += 1;
        }
        UsemaConfig {
            in_channels,
            num_classes,
            features: (0..stages).map(|s| (32usize << s).min(512)).collect(),
            window: 16,
            head_dim: 32,
            mean_term: true,
            rope: true,
            decoder_blocks: 1,
        }
    }

    /// Inputs must be multiples of this on both axes.
    pub fn stride(&self) -> usize {
        1 << (self.features.len().saturating_sub(1))
    }

    /// Deep-supervision weights of the decoder outputs, full resolution first: ∝ 1/2^i, the
    /// lowest resolution 0, normalised to sum 1 (nnU-Net). One output: weight 1.
    pub fn supervision_weights(&self) -> Vec<f64> {
        let n = self.features.len().saturating_sub(1).max(1);
        let mut w: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
        if n > 1 {
            w[n - 1] = 0.0;
        }
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }

    fn check(&self) -> Result<(), String> {
        if self.features.len() < 2 {
            return Err("USEMA needs at least two stages".into());
        }
        if self.num_classes < 2 {
            return Err(format!(
                "USEMA predicts a softmax over classes including background: num_classes {} < 2",
                self.num_classes
            ));
        }
        for &f in &self.features {
            if f == 0 || !f.is_multiple_of(self.head_dim) || !f.is_multiple_of(4) {
                return Err(format!(
                    "stage width {f} is not a multiple of the head dimension {} (and of 4 for RoPE)",
                    self.head_dim
                ));
            }
        }
        Ok(())
    }
}

/// A convolution with bias.
#[derive(Debug, Clone)]
pub struct Conv {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    pub stride: usize,
    pub groups: usize,
}

impl Conv {
    fn load(
        w: &mut Loader,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self, String> {
        Ok(Conv {
            weight: w.param(&format!("{name}.weight"), [cout, cin / groups, k, k])?,
            bias: w.param(&format!("{name}.bias"), [cout])?,
            stride,
            groups,
        })
    }

    fn depthwise(w: &mut Loader, name: &str, c: usize) -> Result<Self, String> {
        Self::load(w, name, c, c, 3, 1, c)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let k = self.weight.val().dims()[2];
        conv2d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvOptions::new([self.stride; 2], [k / 2; 2], [1, 1], self.groups),
        )
    }

    fn named(&mut self, prefix: &str, name: &str, out: &mut Visit<'_>) {
        let p = join(prefix, name);
        out(join(&p, "weight"), (&mut self.weight).into());
        out(join(&p, "bias"), (&mut self.bias).into());
    }
}

/// Per-channel scale and shift (InstanceNorm / LayerNorm affine, Linear).
#[derive(Debug, Clone)]
pub struct Affine {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl Affine {
    fn load(w: &mut Loader, name: &str, c: usize) -> Result<Self, String> {
        Ok(Affine {
            weight: w.param(&format!("{name}.weight"), [c])?,
            bias: w.param(&format!("{name}.bias"), [c])?,
        })
    }

    /// InstanceNorm (biased variance, eps 1e-5) of (B, C, H, W).
    fn instance_norm(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let t = x.reshape([b, c, h * w]);
        let xc = t.clone() - t.mean_dim(2);
        let var = xc.clone().square().mean_dim(2);
        let y = (xc / var.add_scalar(1e-5).sqrt()).reshape([b, c, h, w]);
        y * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }

    /// LayerNorm over the channels of (B, N, C).
    fn layer_norm(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        layer_norm(x.reshape([b * n, c]), self.weight.val(), self.bias.val()).reshape([b, n, c])
    }

    fn named(&mut self, prefix: &str, name: &str, out: &mut Visit<'_>) {
        let p = join(prefix, name);
        out(join(&p, "weight"), (&mut self.weight).into());
        out(join(&p, "bias"), (&mut self.bias).into());
    }
}

/// y = x Wᵀ + b on the last axis.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    fn load(w: &mut Loader, name: &str, cin: usize, cout: usize) -> Result<Self, String> {
        Ok(Linear {
            weight: w.param(&format!("{name}.weight"), [cout, cin])?,
            bias: w.param(&format!("{name}.bias"), [cout])?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c] = x.dims();
        let [o, _] = self.weight.val().dims();
        (x.reshape([b * n, c]).matmul(self.weight.val().transpose())
            + self.bias.val().unsqueeze_dim(0))
        .reshape([b, n, o])
    }

    fn named(&mut self, prefix: &str, name: &str, out: &mut Visit<'_>) {
        let p = join(prefix, name);
        out(join(&p, "weight"), (&mut self.weight).into());
        out(join(&p, "bias"), (&mut self.bias).into());
    }
}

/// Residual block (U-Mamba's BasicResBlock): conv3×3 (stride) → IN → LeakyReLU → conv3×3 →
/// IN, plus the input (through a 1×1 conv with the same stride when the shape changes), then
/// LeakyReLU(0.01).
#[derive(Debug, Clone)]
pub struct ResBlock {
    pub conv1: Conv,
    pub norm1: Affine,
    pub conv2: Conv,
    pub norm2: Affine,
    pub conv3: Option<Conv>,
}

impl ResBlock {
    fn load(w: &mut Loader, cin: usize, cout: usize, stride: usize) -> Result<Self, String> {
        Ok(ResBlock {
            conv1: Conv::load(w, "conv1", cin, cout, 3, stride, 1)?,
            norm1: Affine::load(w, "norm1", cout)?,
            conv2: Conv::load(w, "conv2", cout, cout, 3, 1, 1)?,
            norm2: Affine::load(w, "norm2", cout)?,
            conv3: if cin != cout || stride != 1 {
                Some(Conv::load(w, "conv3", cin, cout, 1, stride, 1)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = leaky_relu(
            self.norm1.instance_norm(self.conv1.forward(x.clone())),
            0.01,
        );
        let y = self.norm2.instance_norm(self.conv2.forward(y));
        let skip = match &self.conv3 {
            Some(c) => c.forward(x),
            None => x,
        };
        leaky_relu(y + skip, 0.01)
    }
}

impl NamedParams for ResBlock {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        self.conv1.named(prefix, "conv1", out);
        self.norm1.named(prefix, "norm1", out);
        self.conv2.named(prefix, "conv2", out);
        self.norm2.named(prefix, "norm2", out);
        if let Some(c) = &mut self.conv3 {
            c.named(prefix, "conv3", out);
        }
    }
}

/// The SEMA block (MODEL-SPEC §B.3) on (B, C, H, W):
/// x += CPE₁(x); t = LN₁(x); g = SiLU(act_proj t); a = SiLU(dwc(in_proj t));
/// o = SEMA(RoPE(q), RoPE(k), v = a) + LePE(a) with [q|k] = qk(a);
/// x += out_proj(o ⊙ g); x += CPE₂(x); x += fc2(GELU(fc1(LN₂(x)))).
#[derive(Debug, Clone)]
pub struct SemaBlock {
    pub cpe1: Conv,
    pub norm1: Affine,
    pub act_proj: Linear,
    pub in_proj: Linear,
    pub dwc: Conv,
    pub qk: Linear,
    pub lepe: Conv,
    pub out_proj: Linear,
    pub cpe2: Conv,
    pub norm2: Affine,
    pub fc1: Linear,
    pub fc2: Linear,
    pub heads: usize,
    /// Window side; `None`: full attention over the whole map, no mean term (bottleneck).
    pub window: Option<usize>,
    pub mean_term: bool,
    pub rope: bool,
}

impl SemaBlock {
    fn load(
        w: &mut Loader,
        c: usize,
        cfg: &UsemaConfig,
        window: Option<usize>,
    ) -> Result<Self, String> {
        Ok(SemaBlock {
            cpe1: Conv::depthwise(w, "cpe1", c)?,
            norm1: Affine::load(w, "norm1", c)?,
            act_proj: Linear::load(w, "act_proj", c, c)?,
            in_proj: Linear::load(w, "in_proj", c, c)?,
            dwc: Conv::depthwise(w, "dwc", c)?,
            qk: Linear::load(w, "attn.qk", c, 2 * c)?,
            lepe: Conv::depthwise(w, "attn.lepe", c)?,
            out_proj: Linear::load(w, "out_proj", c, c)?,
            cpe2: Conv::depthwise(w, "cpe2", c)?,
            norm2: Affine::load(w, "norm2", c)?,
            fc1: Linear::load(w, "mlp.fc1", c, 4 * c)?,
            fc2: Linear::load(w, "mlp.fc2", 4 * c, c)?,
            heads: c / cfg.head_dim,
            window,
            mean_term: cfg.mean_term,
            rope: cfg.rope,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>, String> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let tokens = |t: Tensor<4>| t.reshape([b, c, n]).swap_dims(1, 2);
        let grid = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let x = x.clone() + self.cpe1.forward(x);
        let s = tokens(x);
        let t = self.norm1.layer_norm(s.clone());
        let g = silu(self.act_proj.forward(t.clone()));
        let a_grid = silu(self.dwc.forward(grid(self.in_proj.forward(t))));
        let a = tokens(a_grid.clone());
        let qk = self.qk.forward(a.clone());
        let (window, mean) = match self.window {
            Some(win) => (win, self.mean_term),
            None => (h.max(w), false),
        };
        let o =
            sema(qk, a, h, w, self.heads, window, self.rope, mean).map_err(|e| e.to_string())?;
        let o = o + tokens(self.lepe.forward(a_grid));
        let x = grid(s + self.out_proj.forward(o * g));
        let x = x.clone() + self.cpe2.forward(x);
        let s = tokens(x);
        let m = self
            .fc2
            .forward(gelu(self.fc1.forward(self.norm2.layer_norm(s.clone()))));
        Ok(grid(s + m))
    }
}

impl NamedParams for SemaBlock {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        self.cpe1.named(prefix, "cpe1", out);
        self.norm1.named(prefix, "norm1", out);
        self.act_proj.named(prefix, "act_proj", out);
        self.in_proj.named(prefix, "in_proj", out);
        self.dwc.named(prefix, "dwc", out);
        self.qk.named(prefix, "attn.qk", out);
        self.lepe.named(prefix, "attn.lepe", out);
        self.out_proj.named(prefix, "out_proj", out);
        self.cpe2.named(prefix, "cpe2", out);
        self.norm2.named(prefix, "norm2", out);
        self.fc1.named(prefix, "mlp.fc1", out);
        self.fc2.named(prefix, "mlp.fc2", out);
    }
}

/// Encoder stage: two residual blocks (the first may stride) and a SEMA block.
#[derive(Debug, Clone)]
pub struct EncoderStage {
    pub res: Vec<ResBlock>,
    pub sema: SemaBlock,
}

/// Decoder stage: transposed conv ×2, concatenation with the skip, residual blocks, head.
#[derive(Debug, Clone)]
pub struct DecoderStage {
    pub up: (Param<Tensor<4>>, Param<Tensor<1>>),
    pub res: Vec<ResBlock>,
    pub head: Conv,
}

/// The whole network: input (B, C_in, H, W) with H, W multiples of [`UsemaConfig::stride`].
#[derive(Debug, Clone)]
pub struct Usema {
    pub config: UsemaConfig,
    pub stem: ResBlock,
    pub encoder: Vec<EncoderStage>,
    pub decoder: Vec<DecoderStage>,
}

impl Usema {
    pub fn load(config: UsemaConfig, w: &mut Loader) -> Result<Self, String> {
        config.check()?;
        let f = &config.features;
        let s_n = f.len();
        let stem = ResBlock::load(&mut w.sub("stem"), config.in_channels, f[0], 1)?;
        let mut encoder = Vec::with_capacity(s_n);
        for s in 0..s_n {
            let mut e = w.sub(&format!("encoder.{s}"));
            let (cin, stride) = if s == 0 { (f[0], 1) } else { (f[s - 1], 2) };
            let res = vec![
                ResBlock::load(&mut e.sub("res.0"), cin, f[s], stride)?,
                ResBlock::load(&mut e.sub("res.1"), f[s], f[s], 1)?,
            ];
            let window = (s + 1 < s_n).then_some(config.window);
            let sema = SemaBlock::load(&mut e.sub("sema"), f[s], &config, window)?;
            encoder.push(EncoderStage { res, sema });
        }
        let mut decoder = Vec::with_capacity(s_n - 1);
        for j in 0..s_n - 1 {
            // Decoder stage j brings stage s_n-1-j's features up to stage s = s_n-2-j.
            let (deep, s) = (f[s_n - 1 - j], f[s_n - 2 - j]);
            let mut d = w.sub(&format!("decoder.{j}"));
            let up = (
                d.param("up.weight", [deep, s, 2, 2])?,
                d.param("up.bias", [s])?,
            );
            let mut res = Vec::with_capacity(config.decoder_blocks);
            for k in 0..config.decoder_blocks.max(1) {
                let cin = if k == 0 { 2 * s } else { s };
                res.push(ResBlock::load(&mut d.sub(&format!("res.{k}")), cin, s, 1)?);
            }
            let head = Conv::load(&mut d, "head", s, config.num_classes, 1, 1, 1)?;
            decoder.push(DecoderStage { up, res, head });
        }
        Ok(Usema {
            config,
            stem,
            encoder,
            decoder,
        })
    }

    /// Logits at every decoder resolution, full resolution first: (B, K, H/2^i, W/2^i).
    /// The input is z-scored per image and channel first (nnU-Net's normalisation), so any
    /// intensity range may come in.
    pub fn forward(&self, x: Tensor<4>) -> Result<Vec<Tensor<4>>, String> {
        let [_, c, h, w] = x.dims();
        let stride = self.config.stride();
        if c != self.config.in_channels || !h.is_multiple_of(stride) || !w.is_multiple_of(stride) {
            return Err(format!(
                "USEMA takes {} channels and sides that are multiples of {stride}; got {c} channels, {h}×{w}",
                self.config.in_channels
            ));
        }
        let mut x = self.stem.forward(zscore(x));
        let mut skips = Vec::with_capacity(self.encoder.len());
        for stage in &self.encoder {
            for r in &stage.res {
                x = r.forward(x);
            }
            x = stage.sema.forward(x)?;
            skips.push(x.clone());
        }
        skips.pop();
        let mut outputs = Vec::with_capacity(self.decoder.len());
        for stage in &self.decoder {
            x = conv_transpose2d(
                x,
                stage.up.0.val(),
                Some(stage.up.1.val()),
                ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1),
            );
            let skip = skips.pop().ok_or("decoder deeper than the encoder")?;
            x = Tensor::cat(vec![x, skip], 1);
            for r in &stage.res {
                x = r.forward(x);
            }
            outputs.push(stage.head.forward(x.clone()));
        }
        outputs.reverse();
        Ok(outputs)
    }
}

impl NamedParams for Usema {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        self.stem.visit_params(&join(prefix, "stem"), out);
        for (s, stage) in self.encoder.iter_mut().enumerate() {
            let p = join(prefix, &format!("encoder.{s}"));
            for (k, r) in stage.res.iter_mut().enumerate() {
                r.visit_params(&join(&p, &format!("res.{k}")), out);
            }
            stage.sema.visit_params(&join(&p, "sema"), out);
        }
        for (j, stage) in self.decoder.iter_mut().enumerate() {
            let p = join(prefix, &format!("decoder.{j}"));
            out(join(&p, "up.weight"), (&mut stage.up.0).into());
            out(join(&p, "up.bias"), (&mut stage.up.1).into());
            for (k, r) in stage.res.iter_mut().enumerate() {
                r.visit_params(&join(&p, &format!("res.{k}")), out);
            }
            stage.head.named(&p, "head", out);
        }
    }
}

/// Per image and channel: (x − mean) / max(std, 1e−8) over the pixels.
pub fn zscore(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let t = x.reshape([b, c, h * w]);
    let xc = t.clone() - t.mean_dim(2);
    let std = xc.clone().square().mean_dim(2).sqrt().clamp_min(1e-8);
    (xc / std).reshape([b, c, h, w])
}

/// nnU-Net's Dice + CE (MODEL-SPEC §B.5) of logits (B, K, h, w) against a one-hot target
/// (B, K, h, w): mean cross-entropy minus the mean over foreground classes of the batch soft
/// Dice (2·Σ p·y + 1e−5) / max(Σ p + Σ y + 1e−5, 1e−8).
pub fn dice_ce(logits: Tensor<4>, onehot: Tensor<4>) -> Tensor<1> {
    let [b, k, h, w] = logits.dims();
    let ce = (onehot.clone() * log_softmax(logits.clone(), 1))
        .sum_dim(1)
        .mean()
        .neg();
    let p = softmax(logits, 1);
    let per_class = |t: Tensor<4>| t.swap_dims(0, 1).reshape([k, b * h * w]).sum_dim(1);
    let inter = per_class(p.clone() * onehot.clone()).narrow(0, 1, k - 1);
    let denom = (per_class(p) + per_class(onehot)).narrow(0, 1, k - 1);
    let dice =
        (inter.mul_scalar(2.0).add_scalar(1e-5) / denom.add_scalar(1e-5).clamp_min(1e-8)).mean();
    ce - dice
}

/// The deep-supervision loss: Σ_i w_i · dice_ce(outputs[i], target nearest-downsampled to
/// output i's size), `onehot` at full resolution, weights from
/// [`UsemaConfig::supervision_weights`].
pub fn deep_supervision_loss(
    outputs: &[Tensor<4>],
    onehot: Tensor<4>,
    weights: &[f64],
) -> Tensor<1> {
    let full = onehot.dims()[2];
    let mut total: Option<Tensor<1>> = None;
    for (out, &wgt) in outputs.iter().zip(weights) {
        if wgt == 0.0 {
            continue;
        }
        let f = (full / out.dims()[2]).max(1);
        let target = if f == 1 {
            onehot.clone()
        } else {
            let every = Slice::new(0, None, f as isize);
            onehot
                .clone()
                .slice([Slice::full(), Slice::full(), every, every])
        };
        let l = dice_ce(out.clone(), target).mul_scalar(wgt);
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([1], &onehot.device()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::params::RandomWeights;
    use burn::tensor::Device;

    /// MODEL-SPEC §B.4's block formulas, summed independently of the module code.
    fn expected_params(cfg: &UsemaConfig) -> usize {
        let res_proj =
            |cin: usize, cout: usize| 9 * cin * cout + 9 * cout * cout + cin * cout + 7 * cout;
        let res_id = |c: usize| 18 * c * c + 6 * c;
        let sema = |c: usize| 13 * c * c + 54 * c;
        let f = &cfg.features;
        let k = cfg.num_classes;
        let mut n = res_proj(cfg.in_channels, f[0]);
        for s in 0..f.len() {
            n += if s == 0 {
                res_id(f[0])
            } else {
                res_proj(f[s - 1], f[s])
            };
            n += res_id(f[s]) + sema(f[s]);
        }
        for s in 0..f.len() - 1 {
            n += 4 * f[s + 1] * f[s] + f[s]; // transposed conv 2×2
            n += res_proj(2 * f[s], f[s]); // after the concatenation
            n += f[s] * k + k; // head
        }
        n
    }

    #[test]
    #[allow(deprecated)]
    fn default_256_has_seven_stages_and_the_spec_parameter_count() {
        let cfg = UsemaConfig::default_for(256, 3, 2);
        assert_eq!(cfg.features, vec![32, 64, 128, 256, 512, 512, 512]);
        assert_eq!(cfg.stride(), 64);
        let mut net = Usema::load(
            cfg.clone(),
            &mut Loader::new(&mut RandomWeights { state: 1 }, Device::ndarray(), ""),
        )
        .unwrap();
        let n = net.param_count();
        assert_eq!(n, expected_params(&cfg));
        // MODEL-SPEC §B.4.1: ≈ 62.6 M for K = 2.
        assert_eq!(n, 62_614_252);
        // SEMA block alone: 13C² + 54C.
        let mut s = net.encoder[1].sema.clone();
        assert_eq!(s.param_count(), 13 * 64 * 64 + 54 * 64);
        // 224² CT (1 channel, 9 classes): six stages, ≈ 40.8 M.
        let ct = UsemaConfig::default_for(224, 1, 9);
        assert_eq!(ct.features, vec![32, 64, 128, 256, 512, 512]);
        let m = expected_params(&ct);
        assert!((40_700_000..40_900_000).contains(&m), "{m}");
    }

    #[test]
    fn supervision_weights_halve_and_drop_the_lowest() {
        let w = UsemaConfig::default_for(256, 3, 2).supervision_weights();
        assert_eq!(w.len(), 6);
        let z: f64 = 1.0 + 0.5 + 0.25 + 0.125 + 0.0625;
        for (i, x) in w.iter().enumerate().take(5) {
            assert!((x - 0.5f64.powi(i as i32) / z).abs() < 1e-12);
        }
        assert_eq!(w[5], 0.0);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut c = UsemaConfig::default_for(64, 3, 2);
        c.num_classes = 1;
        let e = Usema::load(
            c,
            &mut Loader::new(&mut RandomWeights { state: 1 }, Device::default(), ""),
        )
        .unwrap_err();
        assert!(e.contains("num_classes 1"), "{e}");
        let mut c = UsemaConfig::default_for(64, 3, 2);
        c.features[1] = 48;
        let e = Usema::load(
            c,
            &mut Loader::new(&mut RandomWeights { state: 1 }, Device::default(), ""),
        )
        .unwrap_err();
        assert!(e.contains("48"), "{e}");
    }
}
