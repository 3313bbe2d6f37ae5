//! Launching the WGSL scan kernels on burn's own buffers (CubeCL's raw-source route).

use super::geometry::{ScanGeometry, BACKWARD_WORKGROUP, CHANNEL_WORKGROUP};
use super::{ScanConfig, ScanForward, ScanGrads, ScanKernels, ScanOps, ScanTensors};
use crate::ops::launch::{empty, expect_len, launch};
use crate::shaders::{self, ShaderFile};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{into_contiguous, CubeBackend, CubeTensor};
use burn::tensor::{DType, Shape, Slice};

type Cb = CubeBackend;

fn shapes(x: &ScanTensors<Cb>) -> [&Shape; 7] {
    [
        x.u.meta.shape(),
        x.delta.meta.shape(),
        x.a.meta.shape(),
        x.b.meta.shape(),
        x.c.meta.shape(),
        x.d.meta.shape(),
        x.bias.meta.shape(),
    ]
}

fn dims(t: &CubeTensor) -> Vec<usize> {
    t.meta.shape().iter().copied().collect()
}

/// One buffer: [B; C] stacked as (2·B, K, L, NP) with the states zero-padded to NP, then
/// [A | D | bias] as (K·E, N + 2) from word [`ScanGeometry::coef_offset`] — one binding for
/// both, so every scan kernel stays within WebGPU's default of eight storage buffers.
fn pack(
    a: CubeTensor,
    b: CubeTensor,
    c: CubeTensor,
    d: CubeTensor,
    bias: CubeTensor,
    g: &ScanGeometry,
) -> CubeTensor {
    let ke = g.dirs * g.channels;
    let pad = |t: CubeTensor| {
        if g.states_pad == g.states {
            return t;
        }
        let zeros = Cb::float_zeros(
            Shape::from(vec![g.batch, g.dirs, g.len, g.states_pad - g.states]),
            &t.device,
            DType::F32.into(),
        );
        Cb::float_cat(vec![t, zeros], 3)
    };
    let flat = |t: CubeTensor| {
        let n = t.meta.num_elements();
        Cb::float_reshape(t, Shape::from(vec![n]))
    };
    let d = Cb::float_reshape(d, Shape::from(vec![ke, 1]));
    let bias = Cb::float_reshape(bias, Shape::from(vec![ke, 1]));
    let coef = Cb::float_cat(vec![a, d, bias], 1);
    let mut parts = vec![flat(pad(b)), flat(pad(c)), flat(coef)];
    // The kernels read this buffer as vec4: its length must be a whole number of them.
    let tail = (4 - ke * (g.states + 2) % 4) % 4;
    if tail > 0 {
        parts.push(Cb::float_zeros(
            Shape::from(vec![tail]),
            &parts[0].device,
            DType::F32.into(),
        ));
    }
    into_contiguous(Cb::float_cat(parts, 0))
}

fn flat_slice(t: CubeTensor, start: usize, len: usize, dims: Vec<usize>) -> CubeTensor {
    let s = Cb::float_slice(
        t,
        &[Slice::new(start as isize, Some((start + len) as isize), 1)],
    );
    Cb::float_reshape(s, Shape::from(dims))
}

/// Passes 1 and 2 of reduce-then-scan: each group's aggregate from `reduce` over `inputs`,
/// then, in place, the state entering each group. A one-element placeholder when the
/// sequences are walked as a single group.
fn group_carries(
    g: &ScanGeometry,
    groups: usize,
    reduce: &'static ShaderFile,
    inputs: &[&CubeTensor],
    words: &[u32],
) -> CubeTensor {
    let bk = g.batch * g.dirs;
    let len = if groups > 1 {
        2 * bk * groups * g.states_pad * g.channels
    } else {
        1
    };
    let agg = empty(inputs[0], vec![len]);
    if groups > 1 {
        let x = g.channels.div_ceil(CHANNEL_WORKGROUP as usize);
        let mut buffers = inputs.to_vec();
        buffers.push(&agg);
        launch(reduce, CHANNEL_WORKGROUP, [x, groups, bk], &buffers, words);
        launch(
            &shaders::SCAN_CARRY,
            CHANNEL_WORKGROUP,
            [x, g.states_pad, bk],
            &[&agg],
            words,
        );
    }
    agg
}

impl ScanKernels for CubeBackend {
    fn scan_forward(x: ScanTensors<Self>, config: ScanConfig) -> ScanForward<Self> {
        let g = config.geometry(shapes(&x));
        let ScanTensors {
            u,
            delta,
            a,
            b,
            c,
            d,
            bias,
        } = x;
        let u = into_contiguous(u);
        let delta = into_contiguous(delta);
        let bc = pack(a, b, c, d, bias, &g);
        let bk = g.batch * g.dirs;
        let x = g.channels.div_ceil(CHANNEL_WORKGROUP as usize);
        let words = g.words(g.fwd_group_chunks, g.fwd_groups, false);
        let agg = group_carries(
            &g,
            g.fwd_groups,
            &shaders::SCAN_REDUCE,
            &[&u, &delta, &bc],
            &words,
        );
        expect_len(&u, g.batch * g.u_dirs * g.len * g.channels, "u");
        expect_len(&delta, bk * g.len * g.channels, "delta");
        expect_len(&bc, g.bc_len(), "bc");
        let y = empty(&u, dims(&delta));
        let ckpt = empty(&u, vec![bk, g.n_chunks, g.states_pad, g.channels]);
        launch(
            &shaders::SCAN_FORWARD,
            CHANNEL_WORKGROUP,
            [x, g.fwd_groups, bk],
            &[&u, &delta, &bc, &agg, &y, &ckpt],
            &words,
        );
        ScanForward { y, ckpt }
    }

    fn scan_backward(
        x: ScanTensors<Self>,
        ckpt: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        config: ScanConfig,
    ) -> ScanGrads<Self> {
        let g = config.geometry(shapes(&x));
        let ScanTensors {
            u,
            delta,
            a,
            b,
            c,
            d,
            bias,
        } = x;
        let u = into_contiguous(u);
        let delta = into_contiguous(delta);
        let dy = into_contiguous(dy);
        let ckpt = into_contiguous(ckpt);
        let bc = pack(a, b, c, d, bias, &g);
        let bk = g.batch * g.dirs;
        let ke = g.dirs * g.channels;
        let words = g.words(g.bwd_group_chunks, g.bwd_groups, true);
        let agg = group_carries(
            &g,
            g.bwd_groups,
            &shaders::SCAN_BACKWARD_REDUCE,
            &[&delta, &bc, &dy],
            &words,
        );
        let seq = bk * g.len * g.channels;
        let q = bk * g.n_egroups * g.len * g.states;
        let da_len = bk * g.bwd_groups * g.channels * g.states;
        expect_len(&u, g.batch * g.u_dirs * g.len * g.channels, "u");
        expect_len(&delta, bk * g.len * g.channels, "delta");
        expect_len(&dy, bk * g.len * g.channels, "dy");
        expect_len(&bc, g.bc_len(), "bc");
        expect_len(&ckpt, bk * g.n_chunks * g.states_pad * g.channels, "ckpt");
        // du and d(delta) come as partial sums per block of 16 states (dud), then the
        // partials of dB, dC and dA (dpart), in one buffer.
        let dud_len = 2 * g.n_blocks * seq;
        let grads = empty(&u, vec![dud_len + 2 * q + da_len]);
        launch(
            &shaders::SCAN_BACKWARD,
            BACKWARD_WORKGROUP,
            [g.n_egroups * g.n_blocks, g.bwd_groups, bk],
            &[&u, &delta, &bc, &dy, &ckpt, &agg, &grads],
            &words,
        );
        let dud = grads.clone();

        let seq_dims = vec![g.batch, g.dirs, g.len, g.channels];
        let blocks = |start: usize| {
            if g.n_blocks == 1 {
                return flat_slice(dud.clone(), start, seq, seq_dims.clone());
            }
            let t = flat_slice(
                dud.clone(),
                start,
                g.n_blocks * seq,
                vec![g.n_blocks, g.batch * g.dirs * g.len * g.channels],
            );
            Cb::float_reshape(Cb::float_sum_dim(t, 0), Shape::from(seq_dims.clone()))
        };
        let mut du = blocks(0);
        if g.u_dirs == 1 && g.dirs > 1 {
            du = Cb::float_sum_dim(du, 1);
        }
        let ddelta = blocks(g.n_blocks * seq);
        let part = |start: usize| {
            let p = flat_slice(
                grads.clone(),
                dud_len + start,
                q,
                vec![bk, g.n_egroups, g.len * g.states],
            );
            Cb::float_reshape(
                Cb::float_sum_dim(p, 1),
                Shape::from(vec![g.batch, g.dirs, g.len, g.states]),
            )
        };
        let db = part(0);
        let dc = part(q);
        let da = flat_slice(
            grads,
            dud_len + 2 * q,
            da_len,
            vec![g.batch, g.dirs, g.bwd_groups, g.channels * g.states],
        );
        let da = Cb::float_sum_dim(Cb::float_sum_dim(da, 0), 2);
        let da = Cb::float_reshape(da, Shape::from(vec![ke, g.states]));
        let per_channel = |t: CubeTensor| {
            let s = Cb::float_sum_dim(Cb::float_sum_dim(t, 0), 2);
            Cb::float_reshape(s, Shape::from(vec![ke]))
        };
        let dd = per_channel(Cb::float_mul(dy, u));
        let dbias = per_channel(ddelta.clone());
        ScanGrads {
            du,
            ddelta,
            da,
            db,
            dc,
            dd,
            dbias,
        }
    }
}

impl ScanOps for CubeBackend {
    fn selective_scan(x: ScanTensors<Self>, config: ScanConfig) -> FloatTensor<Self> {
        Self::scan_forward(x, config).y
    }
}
