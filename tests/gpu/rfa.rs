//! RFAConv's receptive-field attention kernel on the GPU vs its f64 CPU twin (forward and
//! backward through burn's autodiff), and bad shapes.

use crate::{gpu, Lcg};
use burn::tensor::Tensor;
use medseg_model::fixtures::{rel_l2, tensor, values};
use medseg_model::ops::rfa::rfa_attention;
use medseg_model::reference::rfaconv as twin;

fn check(batch: usize, c: usize, h: usize, w: usize, logit_scale: f64, seed: u64) {
    let Some(ctx) = gpu() else { return };
    let ad = ctx.device.clone().autodiff();
    let px = h * w;
    let mut r = Lcg(seed);
    let pooled = r.vec(batch * c * px, 0.0, 1.0);
    let alpha = r.vec(9 * c, 0.0, logit_scale);
    let feat = r.vec(batch * 9 * c * px, 0.5, 1.0);
    let dout = r.vec(batch * 9 * c * px, 0.0, 1.0);
    let p_t: Tensor<4> = tensor(pooled.clone(), [batch, c, h, w], &ad).require_grad();
    let a_t: Tensor<1> = tensor(alpha.clone(), [9 * c], &ad).require_grad();
    let f_t: Tensor<4> = tensor(feat.clone(), [batch, 9 * c, h, w], &ad).require_grad();
    let out = rfa_attention(p_t.clone(), a_t.clone(), f_t.clone()).expect("valid shapes");
    let grads = (out.clone() * tensor(dout.clone(), [batch, 9 * c, h, w], &ad))
        .sum()
        .backward();
    let want = twin::attention_forward(&pooled, &alpha, &feat, c, px);
    let (dp, da, df) = twin::attention_backward(&pooled, &alpha, &feat, &dout, c, px);
    let got = [
        ("out", values(out.inner()).unwrap(), want, 1e-6),
        (
            "dpooled",
            values(p_t.grad(&grads).unwrap()).unwrap(),
            dp,
            1e-5,
        ),
        (
            "dalpha",
            values(a_t.grad(&grads).unwrap()).unwrap(),
            da,
            1e-5,
        ),
        (
            "dfeat",
            values(f_t.grad(&grads).unwrap()).unwrap(),
            df,
            1e-6,
        ),
    ];
    for (name, ours, reference, tol) in got {
        let e = rel_l2(&ours, &reference);
        assert!(
            e <= tol,
            "{name}: rel L2 {e:.2e} > {tol:.0e} (B {batch}, C {c}, {h}×{w})"
        );
    }
}

#[test]
fn rfa_attention_matches_the_twin() {
    // Odd sizes; a batch of two; channels whose taps straddle workgroups.
    check(2, 3, 5, 7, 2.0, 11);
    // More sites than one workgroup covers, several channels.
    check(1, 24, 16, 12, 2.0, 12);
}

#[test]
fn rfa_attention_is_stable_for_large_logits() {
    // Logits of tens of units: an unshifted softmax would overflow in f32.
    check(1, 4, 6, 6, 60.0, 13);
}

#[test]
fn rfa_attention_refuses_bad_shapes() {
    let Some(ctx) = gpu() else { return };
    let d = &ctx.device;
    let pooled: Tensor<4> = Tensor::zeros([1, 2, 4, 4], d);
    let feat: Tensor<4> = Tensor::zeros([1, 18, 4, 4], d);
    let e = rfa_attention(pooled.clone(), Tensor::zeros([17], d), feat.clone()).unwrap_err();
    assert!(e.to_string().contains("alpha [17]"), "{e}");
    let e = rfa_attention(
        pooled,
        Tensor::zeros([18], d),
        Tensor::zeros([1, 18, 4, 5], d),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expected (B, C, H, W)"), "{e}");
}
