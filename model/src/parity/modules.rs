//! Single modules against their fixtures: SS2D (`ss2d*`), RFAConv (`rfaconv*`) and the RSSS
//! block (`rsss*`), in eval and train mode with every gradient and the running statistics.

use super::e2e::{check_train_eval, compare_grads, FixtureWeights, TrainEvalModule};
use crate::fixtures::{rel_l2, tensor, values, CheckError, Comparison, Fixture, Tolerance};
use crate::nn::params::{AnyParam, Loader, NamedParams};
use crate::nn::rfaconv::RfaConv;
use crate::nn::rsss::RsssBlock;
use crate::ss2d::{Ss2d, Ss2dConfig};
use burn::module::Param;
use burn::tensor::{Device, Tensor};

/// `medseg check-fixtures` check for `ss2d*` files: load `param.*` by official name, run
/// forward and backward of `sum(out · dy)`, compare `out` and every `grad.*`.
pub(super) fn check_ss2d(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, CheckError> {
    let ad = device.clone().autodiff();
    let x = f.shaped("x", 4)?;
    let shape: [usize; 4] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [_, rn2, _] = <[usize; 3]>::try_from(f.shaped("param.x_proj_weight", 3)?.shape.clone())
        .map_err(|_| "param.x_proj_weight is not rank 3".to_string())?;
    let d_state = f.shaped("param.A_logs", 2)?.shape[1];
    let cfg = Ss2dConfig {
        dims: shape[3],
        d_state,
        expand: f.shaped("param.in_proj.weight", 2)?.shape[0] / (2 * shape[3]).max(1),
        dt_rank: rn2 - 2 * d_state,
    };
    let mut source = FixtureWeights::new(f);
    let mut block = Ss2d::load(cfg, &mut Loader::new(&mut source, ad.clone(), ""))?;
    let xt = tensor(x.data.clone(), shape, &ad).require_grad();
    let dy = tensor(f.get("dy")?.data.clone(), shape, &ad);
    let out = block.forward(xt.clone()).map_err(|e| e.to_string())?;
    let grads = (out.clone() * dy).sum().backward();
    let mut cmp = vec![Comparison {
        name: "out".into(),
        error: rel_l2(&values(out.inner())?, &f.get("out")?.data),
        tolerance: Tolerance::Relative(1e-5),
    }];
    let mut named = vec![("x".to_string(), AnyParam::R4(Param::from_tensor(xt)))];
    block.named_params("", &mut named);
    cmp.extend(compare_grads(f, "", &grads, &named, &[], 1e-4)?);
    Ok(cmp)
}

impl TrainEvalModule for RfaConv {
    fn forward_mode(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String> {
        self.forward(x, train)
    }
    fn running_stats(&self) -> Vec<(String, Tensor<1>)> {
        self.named_buffers("")
    }
    fn zero_in_train(&self) -> Vec<String> {
        vec!["conv.0.bias".into()]
    }
}

/// `check-fixtures` for `rfaconv*`: eval and train outputs, every gradient, and the running
/// statistics after the train-mode pass.
pub(super) fn check_rfaconv(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, CheckError> {
    let channels = f.shaped("x", 4)?.shape[1];
    Ok(check_train_eval(f, device, |w| RfaConv::load(w, channels))?)
}

impl TrainEvalModule for RsssBlock {
    fn forward_mode(&mut self, x: Tensor<4>, train: bool) -> Result<Tensor<4>, String> {
        self.forward(x, train)
    }
    fn running_stats(&self) -> Vec<(String, Tensor<1>)> {
        self.conv.named_buffers("conv_blk.cab.0")
    }
    fn zero_in_train(&self) -> Vec<String> {
        vec!["conv_blk.cab.0.conv.0.bias".into()]
    }
}

/// `check-fixtures` for `rsss*`: eval and train outputs, every gradient, running statistics.
pub(super) fn check_rsss(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, CheckError> {
    let channels = f.shaped("x", 4)?.shape[3];
    let d_state = f.shaped("param.self_attention.A_logs", 2)?.shape[1];
    let cfg = Ss2dConfig {
        d_state,
        ..Ss2dConfig::new(channels)
    };
    Ok(check_train_eval(f, device, |w| RsssBlock::load(w, cfg))?)
}
