//! The S6 selective scan (MODEL-SPEC §A.5) on the GPU, forward and backward, as a burn op.
//!
//! Layouts (all f32, contiguous): u (B, Ku, L, E) with Ku = 1 (shared by all directions, as
//! SS2D uses it) or K; delta (B, K, L, E) raw (softplus(delta + bias) is taken inside);
//! A (K·E, N) negative; B and C (B, K, L, N); D and bias (K·E); y (B, K, L, E). Positions are
//! spatial: with [`ScanOrder::CrossScan`] direction k walks the map in its own order while
//! every tensor stays in row-major map order, so SS2D never materialises its four
//! permuted copies.
//!
//! Structure (reduce-then-scan, no workgroup ever waits on another): the sequence is cut in
//! groups of checkpoint chunks; pass 1 reduces each group to its (a, b) aggregate, pass 2
//! walks the few aggregates to get the state entering every group, pass 3 re-walks each group
//! from its carry and writes y and the chunk checkpoints. Backward does the same with the
//! adjoint recurrence and restarts the forward recurrence per chunk from the checkpoints.

pub mod geometry;
mod kernels;

pub use crate::reference::scan::ScanOrder;
pub use geometry::ScanGeometry;

use crate::error::ShapeError;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch, ExtensionType};
use burn::tensor::{DType, Shape, Tensor};

/// Outputs of the raw forward kernels.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct ScanForward<B: Backend> {
    pub y: FloatTensor<B>,
    /// State entering every checkpoint chunk, (B·K, chunks, NP, E), states padded to 16s.
    pub ckpt: FloatTensor<B>,
}

/// Gradients of the scan with respect to each input (same shapes as the inputs).
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct ScanGrads<B: Backend> {
    pub du: FloatTensor<B>,
    pub ddelta: FloatTensor<B>,
    pub da: FloatTensor<B>,
    pub db: FloatTensor<B>,
    pub dc: FloatTensor<B>,
    pub dd: FloatTensor<B>,
    pub dbias: FloatTensor<B>,
}

fn spec_dims<const D: usize>(s: &TensorSpec) -> [usize; D] {
    let mut out = [0; D];
    for (i, o) in out.iter_mut().enumerate() {
        *o = s.shape[i];
    }
    out
}

/// Geometry from the kernel arguments (shapes were validated by the public entry points).
#[allow(clippy::too_many_arguments)]
fn geometry_of(
    u: &Shape,
    delta: &Shape,
    a: &Shape,
    b: &Shape,
    c: &Shape,
    d: usize,
    bias: usize,
    mode: u32,
    height: usize,
    width: usize,
    group_chunks: usize,
) -> ScanGeometry {
    let four = |s: &Shape| [s[0], s[1], s[2], s[3]];
    ScanGeometry::new(
        four(u),
        four(delta),
        [a[0], a[1]],
        four(b),
        four(c),
        d,
        bias,
        order_from(mode, height, width),
        group_chunks,
    )
    .unwrap_or_else(|e| panic!("selective scan kernel called with unchecked shapes: {e}"))
}

fn order_from(mode: u32, height: usize, width: usize) -> ScanOrder {
    if mode == 0 {
        ScanOrder::Sequential
    } else {
        ScanOrder::CrossScan { height, width }
    }
}

fn order_args(order: ScanOrder) -> (u32, usize, usize) {
    match order {
        ScanOrder::Sequential => (0, 0, 0),
        ScanOrder::CrossScan { height, width } => (1, height, width),
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_meta(
    u: &TensorSpec,
    delta: &TensorSpec,
    a: &TensorSpec,
    b: &TensorSpec,
    c: &TensorSpec,
    d: &TensorSpec,
    bias: &TensorSpec,
    mode: &u32,
    height: &usize,
    width: &usize,
    group_chunks: &usize,
) -> ScanForwardMetadata {
    let g = geometry_of(
        &u.shape,
        &delta.shape,
        &a.shape,
        &b.shape,
        &c.shape,
        d.shape[0],
        bias.shape[0],
        *mode,
        *height,
        *width,
        *group_chunks,
    );
    let _ = spec_dims::<4>(u);
    ScanForwardMetadata {
        y: delta.clone(),
        ckpt: TensorSpec::new(
            Shape::from(vec![g.batch * g.dirs, g.n_chunks, g.states_pad, g.channels]),
            DType::F32,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_meta(
    u: &TensorSpec,
    delta: &TensorSpec,
    a: &TensorSpec,
    b: &TensorSpec,
    c: &TensorSpec,
    d: &TensorSpec,
    bias: &TensorSpec,
    _ckpt: &TensorSpec,
    _dy: &TensorSpec,
    _mode: &u32,
    _height: &usize,
    _width: &usize,
    _group_chunks: &usize,
) -> ScanGradsMetadata {
    ScanGradsMetadata {
        du: u.clone(),
        ddelta: delta.clone(),
        da: a.clone(),
        db: b.clone(),
        dc: c.clone(),
        dd: d.clone(),
        dbias: bias.clone(),
    }
}

/// The raw kernels, without autodiff.
#[backend_extension(Cube, Fusion)]
pub trait ScanKernels: Backend {
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = forward_meta)]
    fn scan_forward(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mode: u32,
        height: usize,
        width: usize,
        group_chunks: usize,
    ) -> ScanForward<Self>;

    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = backward_meta)]
    fn scan_backward(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        ckpt: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        mode: u32,
        height: usize,
        width: usize,
        group_chunks: usize,
    ) -> ScanGrads<Self>;
}

/// The differentiable op.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait ScanOps: Backend {
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = delta, shape = delta)]
    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mode: u32,
        height: usize,
        width: usize,
        group_chunks: usize,
    ) -> FloatTensor<Self>;
}

#[derive(Debug, Clone)]
struct ScanState<B: Backend> {
    u: FloatTensor<B>,
    delta: FloatTensor<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    c: FloatTensor<B>,
    d: FloatTensor<B>,
    bias: FloatTensor<B>,
    ckpt: FloatTensor<B>,
    mode: u32,
    height: usize,
    width: usize,
    group_chunks: usize,
}

#[derive(Debug)]
struct ScanBackward;

impl<B: Backend + ScanKernels> Backward<B, 7> for ScanBackward {
    type State = ScanState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 7>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<B>(&ops.node);
        let s = ops.state;
        let g = B::scan_backward(
            s.u,
            s.delta,
            s.a,
            s.b,
            s.c,
            s.d,
            s.bias,
            s.ckpt,
            dy,
            s.mode,
            s.height,
            s.width,
            s.group_chunks,
        );
        let [nu, ndelta, na, nb, nc, nd, nbias] = ops.parents;
        for (node, grad) in [
            (nu, g.du),
            (ndelta, g.ddelta),
            (na, g.da),
            (nb, g.db),
            (nc, g.dc),
            (nd, g.dd),
            (nbias, g.dbias),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + ScanKernels + ScanOps, C: CheckpointStrategy> ScanOps for Autodiff<B, C> {
    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mode: u32,
        height: usize,
        width: usize,
        group_chunks: usize,
    ) -> FloatTensor<Self> {
        let nodes = [
            u.node(),
            delta.node(),
            a.node(),
            b.node(),
            c.node(),
            d.node(),
            bias.node(),
        ];
        match ScanBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (u, delta, a, b, c, d, bias) = (
                    u.into_primitive(),
                    delta.into_primitive(),
                    a.into_primitive(),
                    b.into_primitive(),
                    c.into_primitive(),
                    d.into_primitive(),
                    bias.into_primitive(),
                );
                let out = B::scan_forward(
                    u.clone(),
                    delta.clone(),
                    a.clone(),
                    b.clone(),
                    c.clone(),
                    d.clone(),
                    bias.clone(),
                    mode,
                    height,
                    width,
                    group_chunks,
                );
                let state = ScanState {
                    u,
                    delta,
                    a,
                    b,
                    c,
                    d,
                    bias,
                    ckpt: out.ckpt,
                    mode,
                    height,
                    width,
                    group_chunks,
                };
                prep.finish(state, out.y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::selective_scan(
                u.into_primitive(),
                delta.into_primitive(),
                a.into_primitive(),
                b.into_primitive(),
                c.into_primitive(),
                d.into_primitive(),
                bias.into_primitive(),
                mode,
                height,
                width,
                group_chunks,
            )),
        }
    }
}

/// Tuning of one call; the default chooses the work split from the problem size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Checkpoint chunks walked by one work item (0: automatic). Small values exercise the
    /// reduce-then-scan passes with many groups.
    pub group_chunks: usize,
}

/// Inputs of [`selective_scan`], in the layouts of the module docs.
#[derive(Debug, Clone)]
pub struct ScanInput {
    pub u: Tensor<4>,
    pub delta: Tensor<4>,
    pub a: Tensor<2>,
    pub b: Tensor<4>,
    pub c: Tensor<4>,
    pub d: Tensor<1>,
    pub bias: Tensor<1>,
}

/// y = S6(u, softplus(delta + bias), A, B, C, D) in direction order `order`; differentiable
/// when the tensors live on an autodiff device. Batches whose buffers would exceed the
/// device's storage-binding limit (or 65,535 workgroups) are split and run in pieces.
pub fn selective_scan(
    input: ScanInput,
    order: ScanOrder,
    options: ScanOptions,
) -> Result<Tensor<4>, ShapeError> {
    let ScanInput {
        u,
        delta,
        a,
        b,
        c,
        d,
        bias,
    } = input;
    for (name, dtype) in [
        ("u", u.dtype()),
        ("delta", delta.dtype()),
        ("A", a.dtype()),
        ("B", b.dtype()),
        ("C", c.dtype()),
        ("D", d.dtype()),
        ("delta bias", bias.dtype()),
    ] {
        if dtype != DType::F32 {
            return Err(ShapeError::new(
                "selective scan",
                format!("{name} is {dtype:?}; the scan runs in f32"),
            ));
        }
    }
    let geo = ScanGeometry::new(
        u.dims(),
        delta.dims(),
        a.dims(),
        b.dims(),
        c.dims(),
        d.dims()[0],
        bias.dims()[0],
        order,
        options.group_chunks,
    )?;
    let per_item_bytes = (geo.floats_per_batch_item() as u64 * 4).max(1);
    let limit = crate::gpu::binding_limit();
    let by_memory = (limit / per_item_bytes) as usize;
    let by_dispatch = geometry::MAX_WORKGROUPS_PER_DIM / geo.dirs;
    let max_batch = by_memory.min(by_dispatch);
    if max_batch == 0 {
        return Err(ShapeError::new(
            "selective scan",
            format!(
                "one batch item needs a {per_item_bytes}-byte buffer, more than this GPU's storage-binding limit of {limit} bytes"
            ),
        ));
    }
    let (mode, height, width) = order_args(order);
    let run = |u: Tensor<4>, delta: Tensor<4>, b: Tensor<4>, c: Tensor<4>| {
        Tensor::from_dispatch(Dispatch::selective_scan(
            u.into_dispatch(),
            delta.into_dispatch(),
            a.clone().into_dispatch(),
            b.into_dispatch(),
            c.into_dispatch(),
            d.clone().into_dispatch(),
            bias.clone().into_dispatch(),
            mode,
            height,
            width,
            options.group_chunks,
        ))
    };
    if geo.batch <= max_batch {
        return Ok(run(u, delta, b, c));
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while start < geo.batch {
        let n = max_batch.min(geo.batch - start);
        parts.push(run(
            u.clone().narrow(0, start, n),
            delta.clone().narrow(0, start, n),
            b.clone().narrow(0, start, n),
            c.clone().narrow(0, start, n),
        ));
        start += n;
    }
    Ok(Tensor::cat(parts, 0))
}

/// Forward kernels alone (no autodiff), returning y and the checkpoints; for benchmarks.
pub fn scan_forward_raw(
    input: &ScanInput,
    order: ScanOrder,
    options: ScanOptions,
) -> (Tensor<4>, Tensor<4>) {
    let (mode, height, width) = order_args(order);
    let out = Dispatch::scan_forward(
        input.u.clone().into_dispatch(),
        input.delta.clone().into_dispatch(),
        input.a.clone().into_dispatch(),
        input.b.clone().into_dispatch(),
        input.c.clone().into_dispatch(),
        input.d.clone().into_dispatch(),
        input.bias.clone().into_dispatch(),
        mode,
        height,
        width,
        options.group_chunks,
    );
    (
        Tensor::from_dispatch(out.y),
        Tensor::from_dispatch(out.ckpt),
    )
}

/// Backward kernels alone (no autodiff) from checkpoints `ckpt` and output gradient `dy`;
/// returns (du, ddelta, dA, dB, dC, dD, dbias). For benchmarks and tests.
pub fn scan_backward_raw(
    input: &ScanInput,
    ckpt: Tensor<4>,
    dy: Tensor<4>,
    order: ScanOrder,
    options: ScanOptions,
) -> (
    Tensor<4>,
    Tensor<4>,
    Tensor<2>,
    Tensor<4>,
    Tensor<4>,
    Tensor<1>,
    Tensor<1>,
) {
    let (mode, height, width) = order_args(order);
    let g = Dispatch::scan_backward(
        input.u.clone().into_dispatch(),
        input.delta.clone().into_dispatch(),
        input.a.clone().into_dispatch(),
        input.b.clone().into_dispatch(),
        input.c.clone().into_dispatch(),
        input.d.clone().into_dispatch(),
        input.bias.clone().into_dispatch(),
        ckpt.into_dispatch(),
        dy.into_dispatch(),
        mode,
        height,
        width,
        options.group_chunks,
    );
    (
        Tensor::from_dispatch(g.du),
        Tensor::from_dispatch(g.ddelta),
        Tensor::from_dispatch(g.da),
        Tensor::from_dispatch(g.db),
        Tensor::from_dispatch(g.dc),
        Tensor::from_dispatch(g.dd),
        Tensor::from_dispatch(g.dbias),
    )
}
