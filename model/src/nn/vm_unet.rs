//! VM-UNet (MODEL-SPEC §A.3–A.4): PatchEmbed, VSS blocks (LayerNorm + SS2D, residual), patch
//! merging, patch expanding with additive skips, the final ×4 expand and a 1×1 conv to K
//! classes. Parameters carry the official names (`layers.0.blocks.0.self_attention…`).

use super::params::{join, Loader, NamedParams, Visit};
use crate::ops::conv::conv2d;
use crate::ss2d::{layer_norm, Ss2d, Ss2dConfig};
use burn::module::Param;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

/// Sizes of a VM-UNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmUnetConfig {
    /// Encoder widths, one per stage (paper: 96, 192, 384, 768).
    pub dims: Vec<usize>,
    /// VSS blocks per encoder stage (paper: 2, 2, 2, 2).
    pub depths: Vec<usize>,
    /// VSS blocks per decoder stage, deepest first (paper: 2, 2, 2, 1).
    pub depths_decoder: Vec<usize>,
    pub d_state: usize,
    pub num_classes: usize,
    pub in_channels: usize,
    /// Encoder blocks: VSS (VM-UNet) or RSSS (SA-UMamba).
    pub encoder_block: BlockKind,
    /// Decoder blocks: VSS (VM-UNet, and SA-UMamba as its authors released it) or RSSS (the
    /// SA-UMamba the paper describes, RSSS blocks in the decoder too).
    pub decoder_block: BlockKind,
}

/// Which block a stage is built of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Vss,
    Rsss,
}

impl VmUnetConfig {
    /// The paper's configuration.
    pub fn paper(num_classes: usize) -> Self {
        Self {
            dims: vec![96, 192, 384, 768],
            depths: vec![2, 2, 2, 2],
            depths_decoder: vec![2, 2, 2, 1],
            d_state: 16,
            num_classes,
            in_channels: 3,
            encoder_block: BlockKind::Vss,
            decoder_block: BlockKind::Vss,
        }
    }

    /// SA-UMamba as its authors released it: the paper configuration with RSSS encoder blocks.
    pub fn sa_umamba(num_classes: usize) -> Self {
        Self {
            encoder_block: BlockKind::Rsss,
            ..Self::paper(num_classes)
        }
    }

    /// SA-UMamba as its paper describes it: RSSS blocks in the decoder as well (MODEL-SPEC
    /// §A.7, 56,196,937 parameters at one class).
    pub fn sa_umamba_paper(num_classes: usize) -> Self {
        Self {
            decoder_block: BlockKind::Rsss,
            ..Self::sa_umamba(num_classes)
        }
    }

    fn ss2d(&self, dims: usize) -> Ss2dConfig {
        Ss2dConfig {
            d_state: self.d_state,
            ..Ss2dConfig::new(dims)
        }
    }
}

/// A trainable LayerNorm over the last dimension (`weight`, `bias`).
#[derive(Debug, Clone)]
pub struct Norm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl Norm {
    pub fn load(w: &mut Loader, name: &str, dims: usize) -> Result<Self, String> {
        Ok(Self {
            weight: w.param(&format!("{name}.weight"), [dims])?,
            bias: w.param(&format!("{name}.bias"), [dims])?,
        })
    }

    /// Over the channels of (B, H, W, C).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let y = layer_norm(
            x.reshape([dims[0] * dims[1] * dims[2], dims[3]]),
            self.weight.val(),
            self.bias.val(),
        );
        y.reshape(dims)
    }

    pub fn named(&mut self, prefix: &str, name: &str, out: &mut Visit<'_>) {
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

/// Stochastic depth of one block while training (MODEL-SPEC §A.2): each sample's branch is
/// kept with probability 1 − `rate` and scaled by 1 / (1 − rate), or zeroed. The per-sample
/// draws come from `seed` on the CPU, not from the device's shared generator, so a step is the
/// same whatever else runs on the device and a resumed run draws what an uninterrupted one drew.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DropPath {
    pub rate: f64,
    pub seed: u64,
}

impl DropPath {
    /// The keep (1) / drop (0) decision of each of `b` samples.
    pub fn keeps(self, b: usize) -> Vec<bool> {
        let mut rng = medseg_data::preprocess::SeededRng::new(self.seed);
        (0..b).map(|_| rng.next_f64() >= self.rate).collect()
    }
}

/// `y` with each sample's branch dropped or rescaled by `d`.
pub fn drop_path(y: Tensor<4>, d: DropPath) -> Tensor<4> {
    if d.rate <= 0.0 {
        return y;
    }
    let keep = 1.0 - d.rate;
    let b = y.dims()[0];
    let scale: Vec<f32> = d
        .keeps(b)
        .into_iter()
        .map(|k| if k { (1.0 / keep) as f32 } else { 0.0 })
        .collect();
    let mask = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(scale, [b, 1, 1, 1]),
        &y.device(),
    );
    y * mask
}

/// Stochastic depth per block: rates linspace(0, rate, n) over the encoder blocks in order and
/// the reverse of linspace(0, rate, m) over the decoder blocks; each block's seed is `seed`
/// mixed with its place (`first` + k), so no two blocks share their draws.
fn drop_rates(rate: f64, n: usize, seed: u64, first: u64) -> Vec<DropPath> {
    (0..n)
        .map(|i| DropPath {
            rate: if n > 1 {
                rate * i as f64 / (n - 1) as f64
            } else {
                0.0
            },
            seed: seed ^ (first + i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        })
        .collect()
}

/// x (…, C_in) · Wᵀ with W (C_out, C_in), over the last dimension of (B, H, W, C).
fn linear(x: Tensor<4>, w: &Param<Tensor<2>>) -> Tensor<4> {
    let [b, h, wd, c] = x.dims();
    let [o, _] = w.val().dims();
    crate::ops::conv::linear_t(x.reshape([b * h * wd, c]), w.val()).reshape([b, h, wd, o])
}

/// `x ← x + SS2D(LN(x))`.
#[derive(Debug, Clone)]
pub struct VssBlock {
    pub ln_1: Norm,
    pub self_attention: Ss2d,
}

impl VssBlock {
    fn load(w: &mut Loader, cfg: Ss2dConfig) -> Result<Self, String> {
        Ok(Self {
            ln_1: Norm::load(w, "ln_1", cfg.dims)?,
            self_attention: Ss2d::load(cfg, &mut w.sub("self_attention"))?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>, String> {
        self.forward_dropping(x, DropPath::default())
    }

    /// With stochastic depth: the SS2D branch is dropped per sample with probability `rate`.
    pub fn forward_dropping(&self, x: Tensor<4>, drop: DropPath) -> Result<Tensor<4>, String> {
        let y = self
            .self_attention
            .forward(self.ln_1.forward(x.clone()))
            .map_err(|e| e.to_string())?;
        Ok(x + drop_path(y, drop))
    }
}

impl NamedParams for VssBlock {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        self.ln_1.named(prefix, "ln_1", out);
        self.self_attention
            .visit_params(&join(prefix, "self_attention"), out);
    }
}

/// Patch merging: the four 2×2 sub-grids concatenated (4C), LayerNorm, Linear 4C → 2C.
#[derive(Debug, Clone)]
pub struct PatchMerging {
    pub norm: Norm,
    pub reduction: Param<Tensor<2>>,
}

impl PatchMerging {
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>, String> {
        let [b, h, w, c] = x.dims();
        if h % 2 != 0 || w % 2 != 0 {
            return Err(format!("patch merging needs an even map, got {h}x{w}"));
        }
        let grid = x.reshape([b * h / 2, 2, w / 2, 2 * c]);
        // (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
        let sub = |row: usize, col: usize| {
            grid.clone()
                .narrow(1, row, 1)
                .narrow(3, col * c, c)
                .reshape([b, h / 2, w / 2, c])
        };
        let x = Tensor::cat(vec![sub(0, 0), sub(1, 0), sub(0, 1), sub(1, 1)], 3);
        Ok(linear(self.norm.forward(x), &self.reduction))
    }
}

/// Patch expanding by `scale`: Linear C_in → scale²·c, pixels laid out as (p1, p2, c), LayerNorm(c).
#[derive(Debug, Clone)]
pub struct PatchExpand {
    pub expand: Param<Tensor<2>>,
    pub norm: Norm,
    pub scale: usize,
}

impl PatchExpand {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, _] = x.dims();
        let x = linear(x, &self.expand);
        let s = self.scale;
        let c = x.dims()[3] / (s * s);
        let x = x
            .reshape([b * h, w, s, s * c])
            .swap_dims(1, 2)
            .reshape([b, h * s, w * s, c]);
        self.norm.forward(x)
    }
}

/// A block of a stage.
#[derive(Debug, Clone)]
pub enum Block {
    Vss(Box<VssBlock>),
    Rsss(Box<super::rsss::RsssBlock>),
}

impl Block {
    fn load(w: &mut Loader, kind: BlockKind, cfg: Ss2dConfig) -> Result<Self, String> {
        Ok(match kind {
            BlockKind::Vss => Block::Vss(Box::new(VssBlock::load(w, cfg)?)),
            BlockKind::Rsss => Block::Rsss(Box::new(super::rsss::RsssBlock::load(w, cfg)?)),
        })
    }
}

/// One encoder or decoder stage.
#[derive(Debug, Clone)]
pub struct Stage {
    pub blocks: Vec<Block>,
}

impl Stage {
    /// `drops`: stochastic depth of each block (used only when training).
    fn forward(
        &mut self,
        mut x: Tensor<4>,
        train: bool,
        drops: &[DropPath],
    ) -> Result<Tensor<4>, String> {
        for (k, b) in self.blocks.iter_mut().enumerate() {
            let drop = if train {
                drops.get(k).copied().unwrap_or_default()
            } else {
                DropPath::default()
            };
            x = match b {
                Block::Vss(b) => b.forward_dropping(x, drop)?,
                Block::Rsss(b) => b.forward_dropping(x, train, drop)?,
            };
        }
        Ok(x)
    }

    /// The BatchNorm running statistics of the stage's RSSS blocks (VSS blocks have none).
    fn buffers(&self, prefix: &str, out: &mut Vec<(String, Tensor<1>)>) {
        for (j, b) in self.blocks.iter().enumerate() {
            if let Block::Rsss(b) = b {
                let p = join(prefix, &format!("blocks.{j}.conv_blk.cab.0"));
                out.extend(b.conv.named_buffers(&p));
            }
        }
    }

    fn named(&mut self, prefix: &str, out: &mut Visit<'_>) {
        for (j, b) in self.blocks.iter_mut().enumerate() {
            let p = join(prefix, &format!("blocks.{j}"));
            match b {
                Block::Vss(b) => b.visit_params(&p, out),
                Block::Rsss(b) => b.visit_params(&p, out),
            }
        }
    }
}

/// The whole network: input (B, C_in, H, W), H and W multiples of 32; logits (B, K, H, W).
#[derive(Debug, Clone)]
pub struct VmUnet {
    pub config: VmUnetConfig,
    pub patch_embed: (Param<Tensor<4>>, Param<Tensor<1>>, Norm),
    pub layers: Vec<Stage>,
    pub downsample: Vec<PatchMerging>,
    pub layers_up: Vec<Stage>,
    pub upsample: Vec<PatchExpand>,
    pub final_up: PatchExpand,
    pub final_conv: (Param<Tensor<4>>, Param<Tensor<1>>),
    /// Stochastic depth while training (the reference recipe uses 0.2); 0 after loading.
    pub drop_path: f64,
    /// Seed of the stochastic-depth draws of the next training forward (the trainer sets one
    /// per step).
    pub drop_seed: u64,
}

impl VmUnet {
    /// Weights under the official names with prefix `prefix` (e.g. "vmunet").
    pub fn load(config: VmUnetConfig, w: &mut Loader) -> Result<Self, String> {
        let d = &config.dims;
        let stages = d.len();
        if stages < 2 || config.depths.len() != stages || config.depths_decoder.len() != stages {
            return Err(format!(
                "dims {:?}, depths {:?} and decoder depths {:?} must have the same length (at least 2)",
                d, config.depths, config.depths_decoder
            ));
        }
        let c0 = d[0];
        let patch_embed = (
            w.param("patch_embed.proj.weight", [c0, config.in_channels, 4, 4])?,
            w.param("patch_embed.proj.bias", [c0])?,
            Norm::load(w, "patch_embed.norm", c0)?,
        );
        let mut layers = Vec::new();
        let mut downsample = Vec::new();
        for (i, (&dim, &depth)) in d.iter().zip(&config.depths).enumerate() {
            let mut l = w.sub(&format!("layers.{i}"));
            let blocks = (0..depth)
                .map(|j| {
                    Block::load(
                        &mut l.sub(&format!("blocks.{j}")),
                        config.encoder_block,
                        config.ss2d(dim),
                    )
                })
                .collect::<Result<_, _>>()?;
            layers.push(Stage { blocks });
            if i + 1 < stages {
                downsample.push(PatchMerging {
                    norm: Norm::load(&mut l, "downsample.norm", 4 * dim)?,
                    reduction: l.param("downsample.reduction.weight", [2 * dim, 4 * dim])?,
                });
            }
        }
        let mut layers_up = Vec::new();
        let mut upsample = Vec::new();
        for (i, &depth) in config.depths_decoder.iter().enumerate() {
            let dim = d[stages - 1 - i];
            let mut l = w.sub(&format!("layers_up.{i}"));
            if i > 0 {
                upsample.push(PatchExpand {
                    expand: l.param("upsample.expand.weight", [4 * dim, 2 * dim])?,
                    norm: Norm::load(&mut l, "upsample.norm", dim)?,
                    scale: 2,
                });
            }
            let blocks = (0..depth)
                .map(|j| {
                    Block::load(
                        &mut l.sub(&format!("blocks.{j}")),
                        config.decoder_block,
                        config.ss2d(dim),
                    )
                })
                .collect::<Result<_, _>>()?;
            layers_up.push(Stage { blocks });
        }
        let final_up = PatchExpand {
            expand: w.param("final_up.expand.weight", [4 * c0, c0])?,
            norm: Norm::load(w, "final_up.norm", c0 / 4)?,
            scale: 4,
        };
        let final_conv = (
            w.param("final_conv.weight", [config.num_classes, c0 / 4, 1, 1])?,
            w.param("final_conv.bias", [config.num_classes])?,
        );
        Ok(Self {
            config,
            patch_embed,
            layers,
            downsample,
            layers_up,
            upsample,
            final_up,
            final_conv,
            drop_path: 0.0,
            drop_seed: 0,
        })
    }

    /// Logits (B, K, H, W) of an input (B, C_in, H, W). `train` selects BatchNorm batch
    /// statistics (SA-UMamba's RFAConv) and updates the running ones.
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String> {
        let [_, c, h, w] = x.dims();
        if c != self.config.in_channels || h % 32 != 0 || w % 32 != 0 || h == 0 || w == 0 {
            return Err(format!(
                "VM-UNet needs ({}, H, W) inputs with H and W multiples of 32; got ({c}, {h}, {w})",
                self.config.in_channels
            ));
        }
        let (pw, pb, pn) = &mut self.patch_embed;
        let x = conv2d(
            x,
            pw.val(),
            Some(pb.val()),
            ConvOptions::new([4, 4], [0, 0], [1, 1], 1),
        );
        let mut x = pn.forward(x.permute([0, 2, 3, 1]));
        let n_enc = self.config.depths.iter().sum();
        let enc_rates = drop_rates(self.drop_path, n_enc, self.drop_seed, 0);
        let mut dec_rates = drop_rates(
            self.drop_path,
            self.config.depths_decoder.iter().sum(),
            self.drop_seed,
            n_enc as u64,
        );
        dec_rates.reverse();
        let (mut e0, mut d0) = (0, 0);
        let mut skips = Vec::new();
        for (i, stage) in self.layers.iter_mut().enumerate() {
            skips.push(x.clone());
            let n = stage.blocks.len();
            x = stage.forward(x, train, &enc_rates[e0..e0 + n])?;
            e0 += n;
            if let Some(down) = self.downsample.get_mut(i) {
                x = down.forward(x)?;
            }
        }
        let n = self.layers_up.len();
        for (i, stage) in self.layers_up.iter_mut().enumerate() {
            if i > 0 {
                x = self.upsample[i - 1].forward(x + skips[n - i].clone());
            }
            let n = stage.blocks.len();
            x = stage.forward(x, train, &dec_rates[d0..d0 + n])?;
            d0 += n;
        }
        let x = self.final_up.forward(x).permute([0, 3, 1, 2]);
        let (fw, fb) = &self.final_conv;
        Ok(conv2d(
            x,
            fw.val(),
            Some(fb.val()),
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ))
    }
}

impl VmUnet {
    /// BatchNorm running statistics under their official names (the RFAConv of every RSSS
    /// block, encoder and, in the paper's SA-UMamba, decoder).
    pub fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor<1>)> {
        let mut out = Vec::new();
        for (name, stages) in [("layers", &self.layers), ("layers_up", &self.layers_up)] {
            for (i, stage) in stages.iter().enumerate() {
                stage.buffers(&join(prefix, &format!("{name}.{i}")), &mut out);
            }
        }
        out
    }
}

impl NamedParams for VmUnet {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        let (pw, pb, pn) = &mut self.patch_embed;
        out(join(prefix, "patch_embed.proj.weight"), pw.into());
        out(join(prefix, "patch_embed.proj.bias"), pb.into());
        pn.named(prefix, "patch_embed.norm", out);
        for (i, stage) in self.layers.iter_mut().enumerate() {
            let l = join(prefix, &format!("layers.{i}"));
            stage.named(&l, out);
            if let Some(down) = self.downsample.get_mut(i) {
                down.norm.named(&l, "downsample.norm", out);
                out(
                    join(&l, "downsample.reduction.weight"),
                    (&mut down.reduction).into(),
                );
            }
        }
        for (i, stage) in self.layers_up.iter_mut().enumerate() {
            let l = join(prefix, &format!("layers_up.{i}"));
            if i > 0 {
                let up = &mut self.upsample[i - 1];
                out(join(&l, "upsample.expand.weight"), (&mut up.expand).into());
                up.norm.named(&l, "upsample.norm", out);
            }
            stage.named(&l, out);
        }
        out(
            join(prefix, "final_up.expand.weight"),
            (&mut self.final_up.expand).into(),
        );
        self.final_up.norm.named(prefix, "final_up.norm", out);
        out(
            join(prefix, "final_conv.weight"),
            (&mut self.final_conv.0).into(),
        );
        out(
            join(prefix, "final_conv.bias"),
            (&mut self.final_conv.1).into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{drop_rates, DropPath};

    #[test]
    fn stochastic_depth_keeps_one_minus_rate_of_the_samples() {
        for rate in [0.1, 0.2, 0.5] {
            let keeps = DropPath { rate, seed: 7 }.keeps(200_000);
            let kept = keeps.iter().filter(|&&k| k).count() as f64 / keeps.len() as f64;
            assert!(
                (kept - (1.0 - rate)).abs() < 0.005,
                "rate {rate}: kept {kept}"
            );
        }
        // A rate of 0 keeps everything; the same seed draws the same; another seed does not.
        assert!(DropPath { rate: 0.0, seed: 1 }
            .keeps(1000)
            .iter()
            .all(|&k| k));
        let a = DropPath { rate: 0.5, seed: 3 }.keeps(64);
        assert_eq!(a, DropPath { rate: 0.5, seed: 3 }.keeps(64));
        assert_ne!(a, DropPath { rate: 0.5, seed: 4 }.keeps(64));
    }

    #[test]
    fn every_block_draws_with_its_own_seed_and_rate() {
        let enc = drop_rates(0.2, 4, 99, 0);
        let dec = drop_rates(0.2, 4, 99, 4);
        let rates: Vec<f64> = enc.iter().map(|d| d.rate).collect();
        assert_eq!(rates.len(), 4);
        assert!(rates[0] == 0.0 && (rates[3] - 0.2).abs() < 1e-12);
        assert!((rates[1] - 0.2 / 3.0).abs() < 1e-12);
        let mut seeds: Vec<u64> = enc.iter().chain(&dec).map(|d| d.seed).collect();
        seeds.sort();
        seeds.dedup();
        assert_eq!(seeds.len(), 8);
    }
}
