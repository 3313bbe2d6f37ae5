//! End-to-end parity with the official code's fixtures (`e2e_vmunet*`): forward, loss,
//! every gradient and the AdamW step, for `medseg check-fixtures`.

use super::loss::bce_dice;
use super::params::{Loader, NamedParams, WeightSource};
use super::vm_unet::{VmUnet, VmUnetConfig};
use crate::fixtures::{rel_l2, tensor, values, Comparison, Fixture, Tolerance};
use crate::train::adamw::{AdamState, AdamW};
use burn::tensor::activation::sigmoid;
use burn::tensor::Device;
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

impl WeightSource for FixtureWeights<'_> {
    fn buffer(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let key = format!("buffer.{name}");
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

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let key = format!("param.{name}");
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

/// VM-UNet, one class, BceDice: the network follows the sizes stored in the file.
pub fn check_e2e_vmunet(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, String> {
    let info = &f.info;
    if info.get("model").and_then(|m| m.as_str()) != Some("VM-UNet") {
        return Err("header info does not describe a VM-UNet".into());
    }
    let x = f.shaped("x", 4)?;
    let config = VmUnetConfig {
        dims: usizes(info, "dims")?,
        depths: usizes(info, "depths")?,
        depths_decoder: usizes(info, "depths_decoder")?,
        d_state: number(info, "d_state")?,
        num_classes: number(info, "num_classes")?,
        in_channels: x.shape[1],
    };
    if config.num_classes != 1 {
        return Err(format!(
            "{} classes: only the one-class BceDice case is checked so far",
            config.num_classes
        ));
    }
    let ad = device.clone().autodiff();
    let mut source = FixtureWeights::new(f);
    let net = VmUnet::load(config, &mut Loader::new(&mut source, ad.clone(), "vmunet"))?;
    let unused: Vec<&String> = f
        .tensors
        .keys()
        .filter(|k| k.starts_with("param.") && !source.taken.contains(*k))
        .collect();
    if !unused.is_empty() {
        return Err(format!(
            "the network does not use {} stored parameters, e.g. {}",
            unused.len(),
            unused[0]
        ));
    }
    let shape4 = |t: &crate::fixtures::FixtureTensor| -> Result<[usize; 4], String> {
        t.shape
            .clone()
            .try_into()
            .map_err(|_| format!("expected rank 4, got {:?}", t.shape))
    };
    let xt = tensor(x.data.clone(), shape4(x)?, &ad);
    let target = f.shaped("target", 4)?;
    let yt = tensor(target.data.clone(), shape4(target)?, &ad);
    let logits = net.forward(xt)?;
    let mut out = vec![
        rel(
            "train.logits",
            values(logits.clone().inner())?,
            &f.get("train.logits")?.data,
            1e-4,
        )?,
        rel(
            "before.out_eval",
            values(sigmoid(logits.clone()).inner())?,
            &f.get("before.out_eval")?.data,
            1e-4,
        )?,
        rel(
            "train.out",
            values(sigmoid(logits.clone()).inner())?,
            &f.get("train.out")?.data,
            1e-4,
        )?,
    ];
    let loss = bce_dice(logits, yt);
    out.push(rel(
        "train.loss",
        values(loss.clone().inner())?,
        &f.get("train.loss")?.data,
        1e-5,
    )?);
    let grads = loss.backward();
    let mut named = Vec::new();
    net.named_params("vmunet", &mut named);
    let opt = AdamW::official();
    let mut worst_step = 0.0f64;
    let mut worst_name = String::new();
    for (name, p) in &named {
        let g = p
            .grad(&grads)
            .ok_or_else(|| format!("no gradient reached {name}"))?;
        let reference = &f.get(&format!("grad.{name}"))?.data;
        out.push(rel(&format!("grad.{name}"), values(g)?, reference, 1e-3)?);
        // AdamW applied to the stored gradient must give the stored after-step weight.
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

/// Compare the gradients of `named` (and optionally more) with `{tag}.grad.<name>`: relative
/// L2 ≤ `tol`, or ≤ 1e-6 absolute for the structurally-zero names in `zero`.
pub fn compare_grads(
    f: &Fixture,
    tag: &str,
    grads: &burn::tensor::Gradients,
    named: &[(String, super::params::AnyParam)],
    zero: &[&str],
    tol: f64,
) -> Result<Vec<Comparison>, String> {
    let mut out = Vec::new();
    for (name, p) in named {
        let g = values(
            p.grad(grads)
                .ok_or_else(|| format!("no gradient reached {name}"))?,
        )?;
        let reference = &f.get(&format!("{tag}.grad.{name}"))?.data;
        let is_zero = zero.contains(&name.as_str());
        out.push(Comparison {
            name: format!("{tag}.grad.{name}"),
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
