//! Segmentation losses (MODEL-SPEC §A.9).

use burn::tensor::activation::sigmoid;
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
