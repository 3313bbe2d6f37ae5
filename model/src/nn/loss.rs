//! Segmentation losses (MODEL-SPEC §A.9).

use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::Tensor;

/// BceDice with weights 1 and 1 on sigmoid probabilities, as the official code computes it:
/// BCE = mean over every pixel of −[y log p + (1 − y) log(1 − p)] with each log clamped at
/// −100; Dice = 1 − (1/B) Σ_b (2 Σ p·y + 1) / (Σ p + Σ y + 1). `logits` and `target` are
/// (B, 1, H, W); returns a one-element tensor.
pub fn bce_dice(logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [b, c, h, w] = logits.dims();
    let p = sigmoid(logits).reshape([b, c * h * w]);
    let y = target.reshape([b, c * h * w]);
    let log_p = p.clone().log().clamp_min(-100.0);
    let log_q = p.clone().neg().add_scalar(1.0).log().clamp_min(-100.0);
    let bce = (y.clone() * log_p + y.clone().neg().add_scalar(1.0) * log_q)
        .mean()
        .neg();
    let inter = (p.clone() * y.clone()).sum_dim(1);
    let score =
        (inter.mul_scalar(2.0).add_scalar(1.0)) / (p.sum_dim(1) + y.sum_dim(1)).add_scalar(1.0);
    let dice = score.sum().div_scalar(b as f64).neg().add_scalar(1.0);
    bce + dice
}

/// CeDice with weights 1 and 1 (Synapse configuration): cross-entropy of the logits
/// (B, K, H, W) against integer labels (B, H, W) (stored as floats) plus
/// (1/K) Σ_c [1 − (2 Σ s_c y_c + 1e−5) / (Σ s_c² + Σ y_c² + 1e−5)], s = softmax, sums over
/// the whole batch, background included.
pub fn ce_dice(logits: Tensor<4>, labels: Tensor<3>) -> Tensor<1> {
    let [b, k, h, w] = logits.dims();
    let device = logits.device();
    let classes: Vec<f32> = (0..k).map(|c| c as f32).collect();
    let classes = Tensor::<1>::from_floats(classes.as_slice(), &device).reshape([1, k, 1, 1]);
    let onehot = labels.reshape([b, 1, h, w]).equal(classes).float();
    let ce = (onehot.clone() * log_softmax(logits.clone(), 1))
        .sum_dim(1)
        .mean()
        .neg();
    let s = softmax(logits, 1);
    let per_class = |t: Tensor<4>| t.swap_dims(0, 1).reshape([k, b * h * w]).sum_dim(1);
    let inter = per_class(s.clone() * onehot.clone());
    let z = per_class(s.square());
    let y = per_class(onehot.square());
    let dice = (inter.mul_scalar(2.0).add_scalar(1e-5) / (z + y).add_scalar(1e-5))
        .neg()
        .add_scalar(1.0)
        .mean();
    ce + dice
}
