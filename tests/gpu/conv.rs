//! The convolution kernels (`ops::conv`) on the GPU vs their f64 CPU twin, forward and all
//! three gradients through burn's autodiff, on shapes that cross every tile and split edge
//! (ours on every adapter, lavapipe included, whatever `ConvImpl::Auto` would pick there); and
//! the shapes ours do not take, through burn's own convolution, held to the same twin.

use crate::{gpu, Lcg};
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;
use medseg_model::fixtures::{rel_l2, tensor, values};
use medseg_model::ops::conv::{conv2d_with, route, ConvImpl, ConvRoute};
use medseg_model::reference::conv::{self as twin, ConvShape};

/// Runs one convolution on the GPU (forward, then backward of Σ dout · out) and compares
/// out, dx, dweight and dbias with the twin. `ours` says which route the shapes must take.
fn check(s: ConvShape, with_bias: bool, ours: bool, seed: u64) {
    let Some(ctx) = gpu() else { return };
    let ad = ctx.device.clone().autodiff();
    let mut r = Lcg(seed);
    let xd = [s.batch, s.cin, s.height, s.width];
    let wd = [s.cout, s.cin / s.groups, s.k, s.k];
    let od = [s.batch, s.cout, s.out_height(), s.out_width()];
    let x = r.vec(xd.iter().product(), 0.0, 1.0);
    let w = r.vec(s.weight_len(), 0.0, 0.5);
    let bias = r.vec(s.cout, 0.0, 1.0);
    let dout = r.vec(od.iter().product(), 0.0, 1.0);
    let options = ConvOptions::new([s.stride; 2], [s.pad; 2], [1, 1], s.groups);
    let taken = route(&xd, &wd, &options);
    assert_eq!(taken != ConvRoute::Burn, ours, "{s:?} took {taken:?}");
    let x_t: Tensor<4> = tensor(x.clone(), xd, &ad).require_grad();
    let w_t: Tensor<4> = tensor(w.clone(), wd, &ad).require_grad();
    let b_t: Tensor<1> = tensor(bias.clone(), [s.cout], &ad).require_grad();
    let out = conv2d_with(
        x_t.clone(),
        w_t.clone(),
        with_bias.then(|| b_t.clone()),
        options,
        ConvImpl::Ours,
    );
    let grads = (out.clone() * tensor(dout.clone(), od, &ad))
        .sum()
        .backward();
    let want = twin::forward(&s, &x, &w, with_bias.then_some(&bias[..]));
    let (dx, dw, db) = twin::backward(&s, &x, &w, &dout);
    let mut got = vec![
        ("out", values(out.inner()).unwrap(), want),
        ("dx", values(x_t.grad(&grads).unwrap()).unwrap(), dx),
        ("dweight", values(w_t.grad(&grads).unwrap()).unwrap(), dw),
    ];
    if with_bias {
        got.push(("dbias", values(b_t.grad(&grads).unwrap()).unwrap(), db));
    }
    for (name, gpu, reference) in got {
        let e = rel_l2(&gpu, &reference);
        assert!(e <= 1e-5, "{name}: rel L2 {e:.2e} ({s:?}, {taken:?})");
    }
}

fn shape(batch: usize, cin: usize, hw: (usize, usize), cout: usize, k: usize) -> ConvShape {
    ConvShape {
        batch,
        cin,
        height: hw.0,
        width: hw.1,
        cout,
        k,
        stride: 1,
        pad: k / 2,
        groups: 1,
    }
}

#[test]
fn dense_convolutions_match_the_twin() {
    // 3×3 "same": 70 output channels (two channel tiles, the second short), 99 pixels (two
    // pixel tiles), 45 reduction rows (three steps of 16, the last short), two images.
    check(shape(2, 5, (9, 11), 70, 3), true, true, 21);
    // 1×1 without bias (RFAConv's and VM-UNet's last convolutions), 13 → 3 channels.
    check(shape(1, 13, (6, 10), 3, 1), false, true, 22);
    // 3×3 without padding (the input gradient pads by 2) and a 5×5 filter with padding 2.
    check(
        ConvShape {
            pad: 0,
            ..shape(1, 3, (7, 8), 4, 3)
        },
        true,
        true,
        23,
    );
    check(shape(1, 2, (8, 9), 5, 5), true, true, 24);
}

#[test]
fn dense_weight_gradient_sums_many_splits() {
    // 2 · 40 · 36 = 2,880 (image, pixel) pairs: the weight gradient is cut into splits that
    // cross the image boundary.
    check(shape(2, 8, (40, 36), 16, 3), true, true, 25);
}

#[test]
fn depthwise_convolutions_match_the_twin() {
    // SS2D's and USEMA's depthwise 3×3 (one filter per channel) over several splits.
    let dw = |c: usize, m: usize| ConvShape {
        groups: c,
        ..shape(2, c, (33, 35), c * m, 3)
    };
    check(dw(6, 1), true, true, 26);
    // RFAConv's feature convolution: nine filters per channel, no bias.
    check(dw(3, 9), false, true, 27);
}

#[test]
fn other_convolutions_stay_on_burn_and_agree_with_the_twin() {
    // Stride 2 (USEMA's downsampling ResBlocks) and a grouped convolution that is not
    // depthwise: burn's own kernels, held to the same twin.
    check(
        ConvShape {
            stride: 2,
            ..shape(1, 4, (9, 8), 6, 3)
        },
        true,
        false,
        28,
    );
    check(
        ConvShape {
            groups: 2,
            ..shape(1, 4, (6, 6), 6, 3)
        },
        true,
        false,
        29,
    );
}

/// The linear layers' product on our GEMM kernel (the browser's route) against a plain f64
/// product on the CPU, forward and both gradients, at a few shapes (tile edges included).
#[test]
fn linear_products_on_the_gemm_kernel_match_the_cpu() {
    use medseg_model::ops::conv::linear_t_with;
    let Some(ctx) = gpu() else { return };
    let ad = ctx.device.clone().autodiff();
    let mut r = Lcg(41);
    for (m, k, n) in [(5, 3, 2), (130, 96, 70), (64, 17, 129)] {
        let x = r.vec(m * k, 0.0, 1.0);
        let w = r.vec(n * k, 0.0, 0.5);
        let dy = r.vec(m * n, 0.0, 1.0);
        let x_t: Tensor<2> = tensor(x.clone(), [m, k], &ad).require_grad();
        let w_t: Tensor<2> = tensor(w.clone(), [n, k], &ad).require_grad();
        let y = linear_t_with(x_t.clone(), w_t.clone(), true);
        let grads = (y.clone() * tensor(dy.clone(), [m, n], &ad))
            .sum()
            .backward();
        let mut want = vec![0.0; m * n];
        let mut dx = vec![0.0; m * k];
        let mut dw = vec![0.0; n * k];
        for i in 0..m {
            for j in 0..n {
                for q in 0..k {
                    want[i * n + j] += x[i * k + q] * w[j * k + q];
                    dx[i * k + q] += dy[i * n + j] * w[j * k + q];
                    dw[j * k + q] += dy[i * n + j] * x[i * k + q];
                }
            }
        }
        for (name, gpu, reference) in [
            ("y", values(y.inner()).unwrap(), want),
            ("dx", values(x_t.grad(&grads).unwrap()).unwrap(), dx),
            ("dw", values(w_t.grad(&grads).unwrap()).unwrap(), dw),
        ] {
            let e = rel_l2(&gpu, &reference);
            assert!(e <= 1e-5, "{name} ({m}×{k} · {n}×{k}ᵀ): rel L2 {e:.2e}");
        }
    }
}
