//! End-to-end parity with the official code's fixtures (`e2e_*`): forward, loss,
//! every gradient and the AdamW step, for `medseg check-fixtures`.

use crate::fixtures::{rel_l2, tensor, values, CheckError, Comparison, Fixture, Tolerance};
use crate::nn::loss::{bce_dice, ce_dice};
use crate::nn::params::{AnyParam, Loader, NamedParams, WeightSource};
use crate::nn::vm_unet::{BlockKind, VmUnet, VmUnetConfig};
use crate::train::adamw::{AdamState, AdamW};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use std::collections::BTreeSet;

/// `param.<name>` (and `buffer.<name>`) tensors of a fixture as a weight source; remembers
/// what was taken.
pub struct FixtureWeights<'a> {
    fixture: &'a Fixture,
    taken: BTreeSet<String>,
}

impl<'a> FixtureWeights<'a> {
    pub fn new(fixture: &'a Fixture) -> Self {
        Self {
            fixture,
            taken: BTreeSet::new(),
        }
    }
}

impl FixtureWeights<'_> {
    fn take(&mut self, key: String, shape: &[usize]) -> Result<Vec<f32>, String> {
        let t = self.fixture.get(&key)?;
        if t.shape != shape {
            return Err(format!(
                "{key} has shape {:?}; the config needs {shape:?}",
                t.shape
            ));
        }
        self.taken.insert(key);
        Ok(t.data.iter().map(|&v| v as f32).collect())
    }
}

impl WeightSource for FixtureWeights<'_> {
    fn buffer(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        self.take(format!("buffer.{name}"), shape)
    }

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        self.take(format!("param.{name}"), shape)
    }
}

fn usizes(info: &serde_json::Value, key: &str) -> Result<Vec<usize>, String> {
    info.get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .ok_or_else(|| format!("header info lacks '{key}'"))
}

fn number(info: &serde_json::Value, key: &str) -> Result<usize, String> {
    info.get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| format!("header info lacks '{key}'"))
}

fn rel(name: &str, ours: Vec<f64>, reference: &[f64], tol: f64) -> Result<Comparison, String> {
    if ours.len() != reference.len() {
        return Err(format!(
            "{name}: {} values, the fixture has {}",
            ours.len(),
            reference.len()
        ));
    }
    Ok(Comparison {
        name: name.to_string(),
        error: rel_l2(&ours, reference),
        tolerance: Tolerance::Relative(tol),
    })
}

/// End to end, VM-UNet or SA-UMamba (as released), BceDice for one class or CeDice for K:
/// eval output, train logits/output/loss, every gradient (structurally-zero ones absolute),
/// BatchNorm statistics after the train pass, and AdamW applied to the stored gradients. The
/// network follows the sizes stored in the file.
pub fn check_e2e(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, CheckError> {
    let info = &f.info;
    let model = info.get("model").and_then(|m| m.as_str()).unwrap_or("");
    let encoder_block = if model == "VM-UNet" {
        BlockKind::Vss
    } else if model.starts_with("SA-UMamba") {
        BlockKind::Rsss
    } else {
        return Err(format!("header info describes an unknown model '{model}'").into());
    };
    let x = f.shaped("x", 4)?;
    let config = VmUnetConfig {
        dims: usizes(info, "dims")?,
        depths: usizes(info, "depths")?,
        depths_decoder: usizes(info, "depths_decoder")?,
        d_state: number(info, "d_state")?,
        num_classes: number(info, "num_classes")?,
        in_channels: x.shape[1],
        encoder_block,
        decoder_block: BlockKind::Vss,
    };
    let classes = config.num_classes;
    let ad = device.clone().autodiff();
    let load = |source: &mut FixtureWeights| {
        VmUnet::load(
            config.clone(),
            &mut Loader::new(source, ad.clone(), "vmunet"),
        )
    };
    let mut source = FixtureWeights::new(f);
    let mut eval_net = load(&mut source)?;
    // SA-UMamba's iAFF and DySample (`new_upsample`) modules are built but never called
    // (fixtures README): no gradient, no use.
    let unused: Vec<&String> = f
        .tensors
        .keys()
        .filter(|k| {
            k.starts_with("param.")
                && !source.taken.contains(*k)
                && !k.starts_with("param.vmunet.iaffs.")
                && !k.contains(".new_upsample.")
        })
        .collect();
    if let Some(first) = unused.first() {
        return Err(format!(
            "the network does not use {} stored parameters, e.g. {first}",
            unused.len()
        )
        .into());
    }
    let shape4 = |t: &crate::fixtures::FixtureTensor| -> Result<[usize; 4], String> {
        t.shape
            .clone()
            .try_into()
            .map_err(|_| format!("expected rank 4, got {:?}", t.shape))
    };
    let output = |logits: Tensor<4>| {
        if classes == 1 {
            sigmoid(logits)
        } else {
            logits
        }
    };
    let xt = tensor(x.data.clone(), shape4(x)?, &ad);
    let mut out = vec![rel(
        "before.out_eval",
        values(output(eval_net.forward(xt.clone(), false)?).inner())?,
        &f.get("before.out_eval")?.data,
        1e-4,
    )?];
    let mut net = load(&mut FixtureWeights::new(f))?;
    let logits = net.forward(xt, true)?;
    out.push(rel(
        "train.logits",
        values(logits.clone().inner())?,
        &f.get("train.logits")?.data,
        1e-4,
    )?);
    out.push(rel(
        "train.out",
        values(output(logits.clone()).inner())?,
        &f.get("train.out")?.data,
        1e-4,
    )?);
    let target = f.get("target")?;
    let loss = if classes == 1 {
        bce_dice(logits, tensor(target.data.clone(), shape4(target)?, &ad))
    } else {
        let t: [usize; 3] = target
            .shape
            .clone()
            .try_into()
            .map_err(|_| format!("target has shape {:?}", target.shape))?;
        ce_dice(logits, tensor(target.data.clone(), t, &ad))
    };
    out.push(rel(
        "train.loss",
        values(loss.clone().inner())?,
        &f.get("train.loss")?.data,
        1e-5,
    )?);
    let grads = loss.backward();
    let mut named = Vec::new();
    net.named_params("vmunet", &mut named);
    let zero: Vec<&str> = info
        .get("structurally_zero_grads")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    out.extend(compare_grads(f, "", &grads, &named, &zero, 1e-3)?);
    for (name, t) in net.named_buffers("vmunet") {
        out.push(rel(
            &format!("after.buffer.{name}"),
            values(t)?,
            &f.get(&format!("after.buffer.{name}"))?.data,
            1e-5,
        )?);
    }
    // AdamW applied to the stored gradient must give the stored after-step weight.
    let opt = AdamW::official();
    let mut worst_step = 0.0f64;
    let mut worst_name = String::new();
    for (name, _) in &named {
        let reference = &f.get(&format!("grad.{name}"))?.data;
        let mut w = f.get(&format!("param.{name}"))?.data.clone();
        opt.step(&mut w, reference, &mut AdamState::default());
        let after = &f.get(&format!("after.param.{name}"))?.data;
        let e = w
            .iter()
            .zip(after)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if e > worst_step || worst_name.is_empty() {
            worst_step = e;
            worst_name = name.clone();
        }
    }
    out.push(Comparison {
        name: format!("AdamW step, worst {worst_name}"),
        error: worst_step,
        tolerance: Tolerance::Absolute(1e-6),
    });
    Ok(out)
}

/// Compare the gradients of `named` with `{tag}grad.<name>` (tag: `eval.`, `train.` or empty): relative
/// L2 ≤ `tol`, or ≤ 1e-6 absolute for the structurally-zero names in `zero`.
pub fn compare_grads(
    f: &Fixture,
    tag: &str,
    grads: &burn::tensor::Gradients,
    named: &[(String, crate::nn::params::AnyParam)],
    zero: &[&str],
    tol: f64,
) -> Result<Vec<Comparison>, String> {
    let mut out = Vec::new();
    for (name, p) in named {
        let g = values(
            p.grad(grads)
                .ok_or_else(|| format!("no gradient reached {name}"))?,
        )?;
        let reference = &f.get(&format!("{tag}grad.{name}"))?.data;
        let is_zero = zero.contains(&name.as_str());
        out.push(Comparison {
            name: format!("{tag}grad.{name}"),
            error: if is_zero {
                g.iter()
                    .chain(reference)
                    .fold(0.0f64, |m, v| m.max(v.abs()))
            } else {
                rel(name, g, reference, tol)?.error
            },
            tolerance: if is_zero {
                Tolerance::Absolute(1e-6)
            } else {
                Tolerance::Relative(tol)
            },
        });
    }
    Ok(out)
}

/// A module with BatchNorm, checked against a module fixture in eval and train mode.
pub trait TrainEvalModule: NamedParams {
    fn forward_mode(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String>;
    /// Running statistics under the fixture's names.
    fn running_stats(&self) -> Vec<(String, Tensor<1>)>;
    /// Parameters whose true train-mode gradient is exactly zero (a conv bias in front of a
    /// batch-statistics BatchNorm, fixtures README).
    fn zero_in_train(&self) -> Vec<String>;
}

/// Module fixtures with `eval.*` / `train.*` parts: outputs (≤ 1e-5), every gradient of
/// `sum(out · dy)` (≤ 1e-4, zero ones ≤ 1e-6 absolute), running statistics after the train pass.
pub fn check_train_eval<M: TrainEvalModule>(
    f: &Fixture,
    device: &Device,
    load: impl Fn(&mut Loader) -> Result<M, String>,
) -> Result<Vec<Comparison>, String> {
    let x = f.shaped("x", 4)?;
    let shape: [usize; 4] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let ad = device.clone().autodiff();
    let mut out = Vec::new();
    for (train, tag) in [(false, "eval"), (true, "train")] {
        let mut source = FixtureWeights::new(f);
        let mut module = load(&mut Loader::new(&mut source, ad.clone(), ""))?;
        let xt = tensor(x.data.clone(), shape, &ad).require_grad();
        let y = module.forward_mode(xt.clone(), train)?;
        out.push(rel(
            &format!("{tag}.out"),
            values(y.clone().inner())?,
            &f.get(&format!("{tag}.out"))?.data,
            1e-5,
        )?);
        let dy = tensor(f.get("dy")?.data.clone(), shape, &ad);
        let grads = (y * dy).sum().backward();
        let mut named = vec![(
            "x".to_string(),
            AnyParam::R4(burn::module::Param::from_tensor(xt)),
        )];
        module.named_params("", &mut named);
        let zero = if train {
            module.zero_in_train()
        } else {
            Vec::new()
        };
        let zero: Vec<&str> = zero.iter().map(String::as_str).collect();
        out.extend(compare_grads(
            f,
            &format!("{tag}."),
            &grads,
            &named,
            &zero,
            1e-4,
        )?);
        if train {
            for (name, t) in module.running_stats() {
                let key = format!("train.buffer_after.{name}");
                out.push(rel(&key, values(t)?, &f.get(&key)?.data, 1e-5)?);
            }
        }
    }
    Ok(out)
}
