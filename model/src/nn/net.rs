//! The networks medseg trains and runs, behind one type: VM-UNet / SA-UMamba (sigmoid output,
//! BceDice) and USEMA (softmax over classes with deep supervision, nnU-Net's Dice + CE). The
//! trainer, checkpoints and benchmarks work on [`Net`]; each variant keeps its own loss.

use super::loss::{bce_dice, ce_dice};
use super::params::{Loader, NamedParams, Visit};
use super::usema::{deep_supervision_loss, Usema, UsemaConfig};
use super::vm_unet::{BlockKind, VmUnet, VmUnetConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use serde_json::{json, Value};

/// Which network, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    VmUnet(VmUnetConfig),
    Usema(UsemaConfig),
}

impl NetConfig {
    /// The configuration `medseg train --model NAME` uses for binary segmentation of
    /// `size`² RGB images.
    pub fn by_name(name: &str, size: usize) -> Result<Self, String> {
        if let Some(c) = vm_unet_variant(name) {
            return Ok(NetConfig::VmUnet(c));
        }
        match name {
            "usema" => Ok(NetConfig::Usema(UsemaConfig::default_for(size, 3, 2))),
            other => Err(format!(
                "unknown model {other:?}; use sa-umamba, sa-umamba-paper, vm-unet or usema"
            )),
        }
    }

    /// Short name ("sa-umamba", "sa-umamba-paper", "vm-unet", "usema"; a VM-UNet with RSSS
    /// decoder blocks only, which no paper describes, is "vm-unet-rsss-decoder").
    pub fn name(&self) -> &'static str {
        match self {
            NetConfig::VmUnet(c) => match (c.encoder_block, c.decoder_block) {
                (BlockKind::Rsss, BlockKind::Vss) => "sa-umamba",
                (BlockKind::Rsss, BlockKind::Rsss) => "sa-umamba-paper",
                (BlockKind::Vss, BlockKind::Vss) => "vm-unet",
                (BlockKind::Vss, BlockKind::Rsss) => "vm-unet-rsss-decoder",
            },
            NetConfig::Usema(_) => "usema",
        }
    }

    /// Output channels (one sigmoid channel for binary VM-UNet / SA-UMamba).
    pub fn classes(&self) -> usize {
        match self {
            NetConfig::VmUnet(c) => c.num_classes,
            NetConfig::Usema(c) => c.num_classes,
        }
    }

    /// A VM-UNet-family network of base width `c` (stages c, 2c, 4c, 8c; the paper's is 96):
    /// the compact configurations bundled with the app.
    pub fn with_width(self, c: usize) -> Result<Self, String> {
        match self {
            NetConfig::VmUnet(v) if c >= 16 && c.is_multiple_of(16) => {
                Ok(NetConfig::VmUnet(VmUnetConfig {
                    dims: (0..v.dims.len()).map(|i| c << i).collect(),
                    ..v
                }))
            }
            NetConfig::VmUnet(_) => Err(format!(
                "the base width must be a positive multiple of 16, is {c}"
            )),
            NetConfig::Usema(_) => {
                Err("the base width applies to VM-UNet and SA-UMamba only".into())
            }
        }
    }

    /// The same network with `k` output classes (background included) for label maps of more
    /// than one foreground class; `k` ≤ 2 keeps the binary head (VM-UNet one sigmoid output,
    /// USEMA two softmax outputs).
    pub fn with_classes(self, k: usize) -> Self {
        if k <= 2 {
            return self;
        }
        match self {
            NetConfig::VmUnet(v) => NetConfig::VmUnet(VmUnetConfig {
                num_classes: k,
                ..v
            }),
            NetConfig::Usema(mut u) => {
                u.num_classes = k;
                NetConfig::Usema(u)
            }
        }
    }

    /// Classes of the label maps it learns, background included (2 for a binary mask).
    pub fn label_classes(&self) -> usize {
        self.classes().max(2)
    }

    /// Inputs must be multiples of this on both axes.
    pub fn stride(&self) -> usize {
        match self {
            NetConfig::VmUnet(_) => 32,
            NetConfig::Usema(c) => c.stride(),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            NetConfig::VmUnet(c) => json!({
                "dims": c.dims,
                "depths": c.depths,
                "depths_decoder": c.depths_decoder,
                "d_state": c.d_state,
                "num_classes": c.num_classes,
                "in_channels": c.in_channels,
            }),
            NetConfig::Usema(c) => json!({
                "features": c.features,
                "window": c.window,
                "head_dim": c.head_dim,
                "mean_term": c.mean_term,
                "rope": c.rope,
                "decoder_blocks": c.decoder_blocks,
                "num_classes": c.num_classes,
                "in_channels": c.in_channels,
            }),
        }
    }

    /// The configuration of a checkpoint's `model` and `config` entries.
    pub fn from_json(model: Option<&str>, c: &Value) -> Result<Self, String> {
        let list = |k: &str| -> Result<Vec<usize>, String> {
            c[k].as_array()
                .ok_or(format!("config.{k} missing"))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|x| x as usize)
                        .ok_or(format!("config.{k}: not a number"))
                })
                .collect()
        };
        let num = |k: &str| -> Result<usize, String> {
            c[k].as_u64()
                .map(|x| x as usize)
                .ok_or(format!("config.{k} missing"))
        };
        let flag = |k: &str| -> Result<bool, String> {
            c[k].as_bool().ok_or(format!("config.{k} missing"))
        };
        let vm = |base: VmUnetConfig| -> Result<Self, String> {
            Ok(NetConfig::VmUnet(VmUnetConfig {
                dims: list("dims")?,
                depths: list("depths")?,
                depths_decoder: list("depths_decoder")?,
                d_state: num("d_state")?,
                num_classes: num("num_classes")?,
                in_channels: num("in_channels")?,
                ..base
            }))
        };
        if let Some(base) = model.and_then(vm_unet_variant) {
            return vm(base);
        }
        match model {
            Some("usema") => Ok(NetConfig::Usema(UsemaConfig {
                in_channels: num("in_channels")?,
                num_classes: num("num_classes")?,
                features: list("features")?,
                window: num("window")?,
                head_dim: num("head_dim")?,
                mean_term: flag("mean_term")?,
                rope: flag("rope")?,
                decoder_blocks: num("decoder_blocks")?,
            })),
            other => Err(format!("unknown model {other:?}")),
        }
    }
}

/// The paper configuration (one class) of the VM-UNet-family member called `name`: the block
/// kinds whose [`NetConfig::name`] is `name`, so that the two cannot disagree.
fn vm_unet_variant(name: &str) -> Option<VmUnetConfig> {
    let kinds = [BlockKind::Vss, BlockKind::Rsss];
    kinds
        .into_iter()
        .flat_map(|e| kinds.map(|d| (e, d)))
        .map(|(encoder_block, decoder_block)| VmUnetConfig {
            encoder_block,
            decoder_block,
            ..VmUnetConfig::paper(1)
        })
        .find(|c| NetConfig::VmUnet(c.clone()).name() == name)
}

/// A network of any kind.
#[derive(Debug, Clone)]
pub enum Net {
    VmUnet(Box<VmUnet>),
    Usema(Box<Usema>),
}

impl Net {
    pub fn load(cfg: &NetConfig, w: &mut Loader) -> Result<Self, String> {
        Ok(match cfg {
            NetConfig::VmUnet(c) => Net::VmUnet(Box::new(VmUnet::load(c.clone(), w)?)),
            NetConfig::Usema(c) => Net::Usema(Box::new(Usema::load(c.clone(), w)?)),
        })
    }

    pub fn config(&self) -> NetConfig {
        match self {
            Net::VmUnet(n) => NetConfig::VmUnet(n.config.clone()),
            Net::Usema(n) => NetConfig::Usema(n.config.clone()),
        }
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        match self {
            Net::VmUnet(n) => n.patch_embed.0.val().device(),
            Net::Usema(n) => n.stem.conv1.weight.val().device(),
        }
    }

    /// Stochastic depth while training (VM-UNet / SA-UMamba; USEMA's recipe has none).
    pub fn set_drop_path(&mut self, rate: f64) {
        if let Net::VmUnet(n) = self {
            n.drop_path = rate;
        }
    }

    /// The seed of the next training forward's stochastic-depth draws.
    pub fn set_drop_seed(&mut self, seed: u64) {
        if let Net::VmUnet(n) = self {
            n.drop_seed = seed;
        }
    }

    /// The training loss of a batch: images (B, C, H, W) and masks (B, 1, H, W): for a binary
    /// network a mask in [0, 1] (soft at resized edges), for K > 2 classes the class ids.
    /// VM-UNet / SA-UMamba: BceDice on the soft mask, CeDice on class ids; USEMA: deep
    /// supervision with Dice + CE against the mask thresholded at 0.5, or the class ids.
    pub fn train_loss(&mut self, x: Tensor<4>, mask: Tensor<4>) -> Result<Tensor<1>, String> {
        let k = self.classes();
        match self {
            Net::VmUnet(n) if k > 1 => {
                let [b, _, h, w] = mask.dims();
                Ok(ce_dice(n.forward(x, true)?, mask.reshape([b, h, w])))
            }
            Net::VmUnet(n) => Ok(bce_dice(n.forward(x, true)?, mask)),
            Net::Usema(n) => {
                let onehot = if k > 2 {
                    let device = mask.device();
                    let ids: Vec<f32> = (0..k).map(|c| c as f32).collect();
                    let ids =
                        Tensor::<1>::from_floats(ids.as_slice(), &device).reshape([1, k, 1, 1]);
                    mask.equal(ids).float()
                } else {
                    let y = mask.greater_elem(0.5).float();
                    Tensor::cat(vec![y.clone().neg().add_scalar(1.0), y], 1)
                };
                let outputs = n.forward(x)?;
                let weights = n.config.supervision_weights();
                Ok(deep_supervision_loss(&outputs, onehot, &weights))
            }
        }
    }

    /// Foreground probability (B, 1, H, W) in inference mode.
    pub fn foreground(&mut self, x: Tensor<4>) -> Result<Tensor<4>, String> {
        let p = self.probabilities(x)?;
        // One class: its sigmoid; several: 1 − P(background).
        Ok(if p.dims()[1] == 1 {
            p
        } else {
            p.narrow(1, 0, 1).neg().add_scalar(1.0)
        })
    }

    /// Class probabilities (B, K, H, W) in inference mode: sigmoid for one class, softmax
    /// otherwise (USEMA: of its full-resolution output).
    pub fn probabilities(&mut self, x: Tensor<4>) -> Result<Tensor<4>, String> {
        let logits = match self {
            Net::VmUnet(n) => n.forward(x, false)?,
            Net::Usema(n) => n
                .forward(x)?
                .into_iter()
                .next()
                .ok_or("USEMA produced no output")?,
        };
        Ok(if logits.dims()[1] == 1 {
            sigmoid(logits)
        } else {
            softmax(logits, 1)
        })
    }

    pub fn in_channels(&self) -> usize {
        match self {
            Net::VmUnet(n) => n.config.in_channels,
            Net::Usema(n) => n.config.in_channels,
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Net::VmUnet(n) => n.config.num_classes,
            Net::Usema(n) => n.config.num_classes,
        }
    }

    /// Non-trainable state (BatchNorm running statistics) by name.
    pub fn named_buffers(&self, prefix: &str) -> Vec<(String, Tensor<1>)> {
        match self {
            Net::VmUnet(n) => n.named_buffers(prefix),
            Net::Usema(_) => Vec::new(),
        }
    }
}

impl From<VmUnet> for Net {
    fn from(n: VmUnet) -> Self {
        Net::VmUnet(Box::new(n))
    }
}

impl From<Usema> for Net {
    fn from(n: Usema) -> Self {
        Net::Usema(Box::new(n))
    }
}

impl NamedParams for Net {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>) {
        match self {
            Net::VmUnet(n) => n.visit_params(prefix, out),
            Net::Usema(n) => n.visit_params(prefix, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of the VM-UNet family maps to its block kinds and back, and a checkpoint's
    /// JSON gives the same configuration again.
    #[test]
    fn names_and_configurations_round_trip() {
        let kinds = [
            ("sa-umamba", BlockKind::Rsss, BlockKind::Vss),
            ("sa-umamba-paper", BlockKind::Rsss, BlockKind::Rsss),
            ("vm-unet", BlockKind::Vss, BlockKind::Vss),
            ("vm-unet-rsss-decoder", BlockKind::Vss, BlockKind::Rsss),
        ];
        for (name, encoder, decoder) in kinds {
            let cfg = NetConfig::by_name(name, 256).unwrap();
            let NetConfig::VmUnet(c) = &cfg else {
                panic!("{name} is not a VM-UNet")
            };
            assert_eq!(
                (c.encoder_block, c.decoder_block),
                (encoder, decoder),
                "{name}"
            );
            assert_eq!(c.dims, vec![96, 192, 384, 768]);
            assert_eq!(cfg.name(), name);
            assert_eq!(
                NetConfig::from_json(Some(name), &cfg.to_json()).unwrap(),
                cfg
            );
        }
        assert_eq!(
            NetConfig::by_name("sa-umamba", 256).unwrap(),
            NetConfig::VmUnet(VmUnetConfig::sa_umamba(1))
        );
        assert_eq!(
            NetConfig::by_name("sa-umamba-paper", 256).unwrap(),
            NetConfig::VmUnet(VmUnetConfig::sa_umamba_paper(1))
        );
        let usema = NetConfig::by_name("usema", 256).unwrap();
        assert_eq!(usema.name(), "usema");
        assert_eq!(
            NetConfig::from_json(Some("usema"), &usema.to_json()).unwrap(),
            usema
        );

        let e = NetConfig::by_name("unet", 256).unwrap_err();
        assert!(
            e.contains("\"unet\"") && e.contains("sa-umamba-paper"),
            "{e}"
        );
        assert!(NetConfig::from_json(Some("unet"), &usema.to_json()).is_err());
        assert!(NetConfig::from_json(None, &usema.to_json()).is_err());
    }
}
