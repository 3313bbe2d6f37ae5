//! GPU selective scan vs its f64 CPU twin, and its backward vs finite differences.

use crate::{gpu, Lcg};
use burn::tensor::{Device, Tensor};
use medseg_model::fixtures::{rel_l2, tensor, values};
use medseg_model::ops::scan::{selective_scan, ScanGeometry, ScanInput, ScanOptions, ScanOrder};
use medseg_model::reference::scan::{ScanDims, ScanGrads, ScanInputs};

fn problem(dims: ScanDims, order: ScanOrder, seed: u64) -> ScanInputs {
    let mut r = Lcg(seed);
    let seq = dims.batch * dims.dirs * dims.len * dims.channels;
    let st = dims.batch * dims.dirs * dims.len * dims.states;
    let ke = dims.dirs * dims.channels;
    let mut delta = r.vec(seq, -1.0, 2.0);
    // A few entries on the softplus > 20 branch, like the tiny fixture.
    for v in delta.iter_mut().step_by(11) {
        *v += 25.0;
    }
    ScanInputs {
        dims,
        order,
        u: r.vec(
            dims.batch * dims.u_dirs * dims.len * dims.channels,
            0.0,
            1.0,
        ),
        delta,
        // S4D-like decay rates, -1 .. -9.
        a: r.vec(ke * dims.states, -5.0, 4.0),
        b: r.vec(st, 0.0, 1.0),
        c: r.vec(st, 0.0, 1.0),
        d: r.vec(ke, 0.0, 1.0),
        bias: r.vec(ke, -1.0, 1.0),
    }
}

struct GpuResult {
    y: Vec<f64>,
    grads: ScanGrads,
}

fn run_gpu(device: &Device, p: &ScanInputs, dy: &[f64], options: ScanOptions) -> GpuResult {
    let d = p.dims;
    let ad = device.clone().autodiff();
    let u = tensor(p.u.clone(), [d.batch, d.u_dirs, d.len, d.channels], &ad).require_grad();
    let s4 = [d.batch, d.dirs, d.len, d.channels];
    let n4 = [d.batch, d.dirs, d.len, d.states];
    let ke = d.dirs * d.channels;
    let delta = tensor(p.delta.clone(), s4, &ad).require_grad();
    let a = tensor(p.a.clone(), [ke, d.states], &ad).require_grad();
    let b = tensor(p.b.clone(), n4, &ad).require_grad();
    let c = tensor(p.c.clone(), n4, &ad).require_grad();
    let dd = tensor(p.d.clone(), [ke], &ad).require_grad();
    let bias = tensor(p.bias.clone(), [ke], &ad).require_grad();
    let y = selective_scan(
        ScanInput {
            u: u.clone(),
            delta: delta.clone(),
            a: a.clone(),
            b: b.clone(),
            c: c.clone(),
            d: dd.clone(),
            bias: bias.clone(),
        },
        p.order,
        options,
    )
    .expect("valid shapes");
    let grads = (y.clone() * tensor(dy.to_vec(), s4, &ad)).sum().backward();
    fn g<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f64> {
        values(t.grad(grads).expect("gradient reaches every input")).unwrap()
    }
    GpuResult {
        y: values(y.inner()).unwrap(),
        grads: ScanGrads {
            du: g(&u, &grads),
            ddelta: g(&delta, &grads),
            da: g(&a, &grads),
            db: g(&b, &grads),
            dc: g(&c, &grads),
            dd: g(&dd, &grads),
            dbias: g(&bias, &grads),
        },
    }
}

fn compare(label: &str, gpu: &GpuResult, y: &[f64], g: &ScanGrads, fwd_tol: f64, bwd_tol: f64) {
    let rows = [
        ("y", &gpu.y, y, fwd_tol),
        ("du", &gpu.grads.du, &g.du[..], bwd_tol),
        ("ddelta", &gpu.grads.ddelta, &g.ddelta[..], bwd_tol),
        ("dA", &gpu.grads.da, &g.da[..], bwd_tol),
        ("dB", &gpu.grads.db, &g.db[..], bwd_tol),
        ("dC", &gpu.grads.dc, &g.dc[..], bwd_tol),
        ("dD", &gpu.grads.dd, &g.dd[..], bwd_tol),
        ("dbias", &gpu.grads.dbias, &g.dbias[..], bwd_tol),
    ];
    let mut failures = Vec::new();
    for (name, ours, reference, tol) in rows {
        let e = rel_l2(ours, reference);
        if e.is_nan() || e > tol {
            failures.push(format!("{name}: rel {e:.2e} > {tol:.0e}"));
        }
    }
    assert!(failures.is_empty(), "{label}: {}", failures.join("; "));
}

fn check_case(dims: ScanDims, order: ScanOrder, group_chunks: usize, seed: u64) {
    let Some(ctx) = gpu() else { return };
    let p = problem(dims, order, seed);
    p.validate().unwrap();
    let dy = Lcg(seed ^ 0x5eed).vec(p.delta.len(), 0.0, 1.0);
    let y = p.forward();
    let g = p.backward(&dy);
    let gpu = run_gpu(
        &ctx.device,
        &p,
        &dy,
        ScanOptions {
            group_chunks,
            ..Default::default()
        },
    );
    compare(
        &format!("{dims:?} {order:?} group_chunks {group_chunks}"),
        &gpu,
        &y,
        &g,
        1e-5,
        1e-4,
    );
}

fn dims(
    batch: usize,
    dirs: usize,
    u_dirs: usize,
    channels: usize,
    len: usize,
    states: usize,
) -> ScanDims {
    ScanDims {
        batch,
        dirs,
        u_dirs,
        channels,
        len,
        states,
    }
}

#[test]
fn length_one() {
    check_case(dims(2, 4, 4, 3, 1, 16), ScanOrder::Sequential, 0, 1);
}

#[test]
fn odd_length_single_state() {
    check_case(dims(1, 4, 4, 5, 7, 1), ScanOrder::Sequential, 0, 2);
}

#[test]
fn odd_length_across_many_groups() {
    // 157 chunks of 32 walked in groups of 1, 3 and all: every path of reduce-then-scan.
    for group in [1, 3, 0] {
        check_case(dims(1, 2, 2, 3, 4999, 4), ScanOrder::Sequential, group, 3);
    }
}

#[test]
fn length_4096_sixteen_states() {
    check_case(dims(1, 4, 4, 2, 4096, 16), ScanOrder::Sequential, 0, 4);
    check_case(dims(1, 4, 4, 2, 4096, 16), ScanOrder::Sequential, 5, 5);
}

#[test]
fn cross_scan_with_shared_u() {
    // A 5 x 7 map (odd, non-square) and a 12 x 9 map over several groups.
    check_case(
        dims(2, 4, 1, 6, 35, 16),
        ScanOrder::CrossScan {
            height: 5,
            width: 7,
        },
        0,
        6,
    );
    check_case(
        dims(1, 4, 1, 17, 108, 3),
        ScanOrder::CrossScan {
            height: 12,
            width: 9,
        },
        1,
        7,
    );
}

#[test]
fn more_states_than_one_register_block() {
    // N = 20 walks two state blocks in the forward kernels and 32 lanes in the backward.
    check_case(dims(1, 1, 1, 9, 70, 20), ScanOrder::Sequential, 1, 8);
}

#[test]
fn channels_beyond_one_workgroup() {
    // 70 channels: two channel workgroups forward, several channel groups backward.
    check_case(dims(1, 2, 2, 70, 40, 16), ScanOrder::Sequential, 0, 9);
}

/// GPU gradients against central finite differences of the f64 forward (small sizes).
#[test]
fn backward_matches_finite_differences() {
    let Some(ctx) = gpu() else { return };
    let d = dims(1, 4, 1, 2, 8, 2);
    let p = problem(
        d,
        ScanOrder::CrossScan {
            height: 2,
            width: 4,
        },
        11,
    );
    let dy = Lcg(12).vec(p.delta.len(), 0.0, 1.0);
    let gpu = run_gpu(&ctx.device, &p, &dy, ScanOptions::default());
    let loss = |q: &ScanInputs| q.forward().iter().zip(&dy).map(|(a, b)| a * b).sum::<f64>();
    let eps = 1e-5;
    type Field = fn(&mut ScanInputs) -> &mut Vec<f64>;
    let fields: [(&str, Field, &Vec<f64>); 7] = [
        ("u", |q| &mut q.u, &gpu.grads.du),
        ("delta", |q| &mut q.delta, &gpu.grads.ddelta),
        ("A", |q| &mut q.a, &gpu.grads.da),
        ("B", |q| &mut q.b, &gpu.grads.db),
        ("C", |q| &mut q.c, &gpu.grads.dc),
        ("D", |q| &mut q.d, &gpu.grads.dd),
        ("bias", |q| &mut q.bias, &gpu.grads.dbias),
    ];
    for (name, field, grad) in fields {
        assert_eq!(field(&mut p.clone()).len(), grad.len(), "{name}");
        for (i, &gi) in grad.iter().enumerate() {
            let mut hi = p.clone();
            field(&mut hi)[i] += eps;
            let mut lo = p.clone();
            field(&mut lo)[i] -= eps;
            let fd = (loss(&hi) - loss(&lo)) / (2.0 * eps);
            assert!(
                (fd - gi).abs() <= 2e-4 * (1.0 + fd.abs()),
                "d{name}[{i}]: finite difference {fd}, GPU {}",
                gi
            );
        }
    }
}

/// Shapes that do not fit are refused with a message, not a panic.
#[test]
fn wrong_shapes_are_refused() {
    let Some(ctx) = gpu() else { return };
    let dev = &ctx.device;
    let input = ScanInput {
        u: Tensor::zeros([1, 4, 10, 3], dev),
        delta: Tensor::zeros([1, 4, 10, 3], dev),
        a: Tensor::zeros([12, 2], dev),
        b: Tensor::zeros([1, 4, 10, 2], dev),
        c: Tensor::zeros([1, 4, 11, 2], dev),
        d: Tensor::zeros([12], dev),
        bias: Tensor::zeros([12], dev),
    };
    let err = selective_scan(input, ScanOrder::Sequential, ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("C has shape [1, 4, 11, 2]"), "{err}");
}

#[test]
fn length_16384() {
    check_case(dims(1, 1, 1, 2, 16384, 16), ScanOrder::Sequential, 0, 13);
}

/// Batches whose buffers exceed the storage-binding limit run in pieces, with the same result.
#[test]
fn batches_split_under_a_small_binding_limit() {
    let Some(ctx) = gpu() else { return };
    let d = dims(5, 4, 1, 3, 35, 16);
    let order = ScanOrder::CrossScan {
        height: 5,
        width: 7,
    };
    let p = problem(d, order, 14);
    let dy = Lcg(15).vec(p.delta.len(), 0.0, 1.0);
    // Allow two batch items per piece: five run as 2 + 2 + 1.
    let geo = ScanGeometry::new(
        [5, 1, 35, 3],
        [5, 4, 35, 3],
        [12, 16],
        [5, 4, 35, 16],
        [5, 4, 35, 16],
        12,
        12,
        order,
        0,
    )
    .unwrap();
    let per_item = geo.floats_per_batch_item() as u64 * 4;
    let options = ScanOptions {
        max_binding_bytes: Some(2 * per_item + 4),
        ..Default::default()
    };
    let gpu = run_gpu(&ctx.device, &p, &dy, options);
    compare(
        "split batch",
        &gpu,
        &p.forward(),
        &p.backward(&dy),
        1e-5,
        1e-4,
    );
}

/// One batch item larger than the binding limit is a clear error, not a crash.
#[test]
fn an_item_over_the_binding_limit_is_refused() {
    let Some(ctx) = gpu() else { return };
    let dev = &ctx.device;
    let input = ScanInput {
        u: Tensor::zeros([2, 4, 64, 8], dev),
        delta: Tensor::zeros([2, 4, 64, 8], dev),
        a: Tensor::zeros([32, 16], dev),
        b: Tensor::zeros([2, 4, 64, 16], dev),
        c: Tensor::zeros([2, 4, 64, 16], dev),
        d: Tensor::zeros([32], dev),
        bias: Tensor::zeros([32], dev),
    };
    let options = ScanOptions {
        max_binding_bytes: Some(1024),
        ..Default::default()
    };
    let err = selective_scan(input, ScanOrder::Sequential, options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("storage-binding limit of 1024 bytes"), "{err}");
}

/// The raw backward refuses checkpoints that do not belong to its input.
#[test]
fn raw_backward_refuses_foreign_checkpoints() {
    use medseg_model::ops::scan::{scan_backward_raw, scan_forward_raw};
    let Some(ctx) = gpu() else { return };
    let dev = &ctx.device;
    let input = |len: usize| ScanInput {
        u: Tensor::zeros([1, 1, len, 3], dev),
        delta: Tensor::zeros([1, 1, len, 3], dev),
        a: Tensor::zeros([3, 2], dev),
        b: Tensor::zeros([1, 1, len, 2], dev),
        c: Tensor::zeros([1, 1, len, 2], dev),
        d: Tensor::zeros([3], dev),
        bias: Tensor::zeros([3], dev),
    };
    let opts = ScanOptions::default();
    let (y, ckpt) = scan_forward_raw(&input(40), ScanOrder::Sequential, opts).unwrap();
    let err = scan_backward_raw(&input(70), ckpt, y, ScanOrder::Sequential, opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not belong to this input"), "{err}");
}
