//! SEMA window attention on the GPU vs its f64 CPU twin (forward and backward), the
//! full-attention property, and bad shapes.

use crate::{gpu, Lcg};
use burn::tensor::{Device, Tensor};
use medseg_model::fixtures::{rel_l2, tensor, values};
use medseg_model::ops::sema::{sema, window_attention, AttnDims};
use medseg_model::reference::sema as twin;

struct Case {
    batch: usize,
    height: usize,
    width: usize,
    channels: usize,
    heads: usize,
    window: usize,
    rope: bool,
}

struct GpuOut {
    o: Vec<f64>,
    dqk: Vec<f64>,
    dv: Vec<f64>,
}

/// Output and the gradients of Σ o·g through burn's autodiff.
#[allow(clippy::too_many_arguments)]
fn run_gpu(device: &Device, c: &Case, qk: &[f64], v: &[f64], g: &[f64], mean: bool) -> GpuOut {
    let ad = device.clone().autodiff();
    let n = c.height * c.width;
    let qk_t: Tensor<3> = tensor(qk.to_vec(), [c.batch, n, 2 * c.channels], &ad).require_grad();
    let v_t: Tensor<3> = tensor(v.to_vec(), [c.batch, n, c.channels], &ad).require_grad();
    let o = sema(
        qk_t.clone(),
        v_t.clone(),
        c.height,
        c.width,
        c.heads,
        c.window,
        c.rope,
        mean,
    )
    .expect("valid shapes");
    let grads = (o.clone() * tensor(g.to_vec(), [c.batch, n, c.channels], &ad))
        .sum()
        .backward();
    GpuOut {
        o: values(o.inner()).unwrap(),
        dqk: values(qk_t.grad(&grads).expect("dqk")).unwrap(),
        dv: values(v_t.grad(&grads).expect("dv")).unwrap(),
    }
}

fn inputs(c: &Case, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut r = Lcg(seed);
    let n = c.batch * c.height * c.width;
    // Scores of a few units: softmax neither uniform nor one-hot.
    (
        r.vec(n * 2 * c.channels, 0.0, 1.5),
        r.vec(n * c.channels, 0.0, 1.0),
        r.vec(n * c.channels, 0.0, 1.0),
    )
}

fn check(c: Case, seed: u64) {
    let Some(ctx) = gpu() else { return };
    let d = AttnDims::new(
        c.batch, c.height, c.width, c.channels, c.heads, c.window, c.rope,
    )
    .unwrap();
    let (qk, v, g) = inputs(&c, seed);
    let (o, _lse) = twin::forward(&d, &qk, &v);
    let (dqk, dv) = twin::backward(&d, &qk, &v, &g);
    let out = run_gpu(&ctx.device, &c, &qk, &v, &g, false);
    let label = format!(
        "B{} {}x{} C{} heads {} window {} rope {}",
        c.batch, c.height, c.width, c.channels, c.heads, c.window, c.rope
    );
    for (name, ours, reference, tol) in [
        ("o", &out.o, &o, 1e-5),
        ("dqk", &out.dqk, &dqk, 1e-4),
        ("dv", &out.dv, &dv, 1e-4),
    ] {
        let e = rel_l2(ours, reference);
        assert!(e <= tol, "{label}: {name} rel L2 {e:.2e} > {tol:.0e}");
    }
    // With the mean term: the GPU's SEMA equals the twin's attention + mean, and the mean
    // adds (1/N) Σ_i g_i to every dv_j.
    let with_mean = run_gpu(&ctx.device, &c, &qk, &v, &g, true);
    let mut o_mean = o.clone();
    twin::add_mean(&d, &mut o_mean, &v);
    let nt = d.tokens();
    let mut dv_mean = dv.clone();
    for b in 0..c.batch {
        for x in 0..c.channels {
            let s: f64 = (0..nt)
                .map(|i| g[(b * nt + i) * c.channels + x])
                .sum::<f64>()
                / nt as f64;
            for j in 0..nt {
                dv_mean[(b * nt + j) * c.channels + x] += s;
            }
        }
    }
    for (name, ours, reference, tol) in [
        ("o+mean", &with_mean.o, &o_mean, 1e-5),
        ("dqk (mean)", &with_mean.dqk, &dqk, 1e-4),
        ("dv+mean", &with_mean.dv, &dv_mean, 1e-4),
    ] {
        let e = rel_l2(ours, reference);
        assert!(e <= tol, "{label}: {name} rel L2 {e:.2e} > {tol:.0e}");
    }
}

#[test]
fn cut_windows_on_both_edges_match_the_twin() {
    // 11×13 map in 4×4 windows: the last row and column of windows are cut; head dim 32.
    check(
        Case {
            batch: 2,
            height: 11,
            width: 13,
            channels: 64,
            heads: 2,
            window: 4,
            rope: true,
        },
        1,
    );
}

#[test]
fn head_dims_8_16_and_64_match_the_twin() {
    for (channels, heads, window) in [(32, 4, 5), (64, 4, 8), (128, 2, 6)] {
        check(
            Case {
                batch: 1,
                height: 9,
                width: 12,
                channels,
                heads,
                window,
                rope: true,
            },
            channels as u64,
        );
    }
}

#[test]
fn windows_of_16_and_32_match_the_twin() {
    // w = 16 on a 32×20 map (cut windows), w = 32 on 40×32 (keys stream through many tiles).
    for (h, w, window, seed) in [(32, 20, 16, 5), (40, 32, 32, 6)] {
        check(
            Case {
                batch: 1,
                height: h,
                width: w,
                channels: 32,
                heads: 1,
                window,
                rope: true,
            },
            seed,
        );
    }
}

#[test]
fn without_rope_matches_the_twin() {
    check(
        Case {
            batch: 1,
            height: 8,
            width: 8,
            channels: 64,
            heads: 2,
            window: 4,
            rope: false,
        },
        9,
    );
}

/// Property: with the window at least the map and no mean term, SEMA is full softmax
/// attention — here computed naively (rotate, all-pairs scores, softmax, weighted sum) with
/// no windows at all.
#[test]
fn a_window_covering_the_map_is_full_attention() {
    let Some(ctx) = gpu() else { return };
    let c = Case {
        batch: 2,
        height: 6,
        width: 9,
        channels: 32,
        heads: 2,
        window: 64,
        rope: true,
    };
    let (qk, v, g) = inputs(&c, 11);
    let out = run_gpu(&ctx.device, &c, &qk, &v, &g, false);
    let (n, ch, hd) = (c.height * c.width, c.channels, c.channels / c.heads);
    let rot = |x: &[f64], pos: usize| -> Vec<f64> {
        (0..ch / 2)
            .flat_map(|p| {
                let a = twin::rope_angle(ch, p, pos / c.width, pos % c.width);
                [
                    x[2 * p] * a.cos() - x[2 * p + 1] * a.sin(),
                    x[2 * p] * a.sin() + x[2 * p + 1] * a.cos(),
                ]
            })
            .collect()
    };
    let mut expect = vec![0.0; c.batch * n * ch];
    for b in 0..c.batch {
        let q: Vec<Vec<f64>> = (0..n)
            .map(|i| rot(&qk[(b * n + i) * 2 * ch..][..ch], i))
            .collect();
        let k: Vec<Vec<f64>> = (0..n)
            .map(|i| rot(&qk[(b * n + i) * 2 * ch + ch..][..ch], i))
            .collect();
        for h in 0..c.heads {
            let r = h * hd..(h + 1) * hd;
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        q[i][r.clone()]
                            .iter()
                            .zip(&k[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let z: f64 = s.iter().map(|x| x.exp()).sum();
                for j in 0..n {
                    for x in r.clone() {
                        expect[(b * n + i) * ch + x] += s[j].exp() / z * v[(b * n + j) * ch + x];
                    }
                }
            }
        }
    }
    let e = rel_l2(&out.o, &expect);
    assert!(e < 1e-5, "full attention: rel L2 {e:.2e}");
    // And the windowed kernel is not secretly global: 3×3 windows give another answer.
    let windowed = run_gpu(&ctx.device, &Case { window: 3, ..c }, &qk, &v, &g, false);
    assert!(rel_l2(&windowed.o, &expect) > 1e-2);
}

#[test]
fn bad_shapes_are_refused_with_a_message() {
    let Some(ctx) = gpu() else { return };
    let dev = &ctx.device;
    let qk = Tensor::<3>::zeros([1, 12, 64], dev);
    let v = Tensor::<3>::zeros([1, 12, 32], dev);
    let e = window_attention(qk.clone(), v.clone(), 3, 5, 1, 4, true).unwrap_err();
    assert!(e.to_string().contains("not a 3×5 map"), "{e}");
    let e = window_attention(
        qk.clone(),
        Tensor::<3>::zeros([1, 12, 16], dev),
        3,
        4,
        1,
        4,
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("(B, N, 2C)"), "{e}");
    let e = window_attention(qk.clone(), v.clone(), 3, 4, 3, 4, true).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    let e = window_attention(qk, v, 3, 4, 8, 4, true).unwrap_err();
    assert!(e.to_string().contains("head dimension 4"), "{e}");
}
