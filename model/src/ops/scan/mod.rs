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

pub use geometry::ScanGeometry;
pub use geometry::ScanOrder;

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

/// The tensors of one scan call (layouts in the module docs).
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct ScanTensors<B: Backend> {
    pub u: FloatTensor<B>,
    pub delta: FloatTensor<B>,
    pub a: FloatTensor<B>,
    pub b: FloatTensor<B>,
    pub c: FloatTensor<B>,
    pub d: FloatTensor<B>,
    pub bias: FloatTensor<B>,
}

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

/// How one call walks its sequences, and how it splits the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanConfig {
    pub order: ScanOrder,
    /// Checkpoint chunks walked by one work item (0: automatic).
    pub group_chunks: usize,
}

impl ScanConfig {
    /// Geometry from the shapes of u, delta, A, B, C, D and bias (validated by the public
    /// entry points before any kernel is called).
    fn geometry(&self, shapes: [&Shape; 7]) -> ScanGeometry {
        let [u, delta, a, b, c, d, bias] = shapes;
        let four = |s: &Shape| [s[0], s[1], s[2], s[3]];
        ScanGeometry::new(
            four(u),
            four(delta),
            [a[0], a[1]],
            four(b),
            four(c),
            d[0],
            bias[0],
            self.order,
            self.group_chunks,
        )
        .unwrap_or_else(|e| panic!("selective scan kernel called with unchecked shapes: {e}"))
    }
}

impl ScanTensorsMetadata {
    fn shapes(&self) -> [&Shape; 7] {
        [
            &self.u.shape,
            &self.delta.shape,
            &self.a.shape,
            &self.b.shape,
            &self.c.shape,
            &self.d.shape,
            &self.bias.shape,
        ]
    }
}

fn forward_meta(x: &ScanTensorsMetadata, config: &ScanConfig) -> ScanForwardMetadata {
    let g = config.geometry(x.shapes());
    ScanForwardMetadata {
        y: x.delta.clone(),
        ckpt: TensorSpec::new(
            Shape::from(vec![g.batch * g.dirs, g.n_chunks, g.states_pad, g.channels]),
            DType::F32,
        ),
    }
}

fn backward_meta(
    x: &ScanTensorsMetadata,
    _ckpt: &TensorSpec,
    _dy: &TensorSpec,
    _config: &ScanConfig,
) -> ScanGradsMetadata {
    ScanGradsMetadata {
        du: x.u.clone(),
        ddelta: x.delta.clone(),
        da: x.a.clone(),
        db: x.b.clone(),
        dc: x.c.clone(),
        dd: x.d.clone(),
        dbias: x.bias.clone(),
    }
}

/// The raw kernels, without autodiff.
#[backend_extension(Cube, Fusion)]
pub trait ScanKernels: Backend {
    #[fusion(meta = forward_meta)]
    fn scan_forward(
        #[extension_type] x: ScanTensors<Self>,
        config: ScanConfig,
    ) -> ScanForward<Self>;

    #[fusion(meta = backward_meta)]
    fn scan_backward(
        #[extension_type] x: ScanTensors<Self>,
        ckpt: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        config: ScanConfig,
    ) -> ScanGrads<Self>;
}

/// The differentiable op.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait ScanOps: Backend {
    #[fusion(meta = |x, _config| x.delta.clone())]
    fn selective_scan(
        #[extension_type] x: ScanTensors<Self>,
        config: ScanConfig,
    ) -> FloatTensor<Self>;
}

#[derive(Debug, Clone)]
struct ScanState<B: Backend> {
    x: [FloatTensor<B>; 7],
    ckpt: FloatTensor<B>,
    config: ScanConfig,
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
        let ScanState { x, ckpt, config } = ops.state;
        let [u, delta, a, b, c, d, bias] = x;
        let x = ScanTensors {
            u,
            delta,
            a,
            b,
            c,
            d,
            bias,
        };
        let g = B::scan_backward(x, ckpt, dy, config);
        let grads_in = [g.du, g.ddelta, g.da, g.db, g.dc, g.dd, g.dbias];
        for (node, grad) in ops.parents.into_iter().zip(grads_in) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + ScanKernels + ScanOps, C: CheckpointStrategy> ScanOps for Autodiff<B, C> {
    fn selective_scan(x: ScanTensors<Self>, config: ScanConfig) -> FloatTensor<Self> {
        let ScanTensors {
            u,
            delta,
            a,
            b,
            c,
            d,
            bias,
        } = x;
        let all = [u, delta, a, b, c, d, bias];
        let nodes = all.each_ref().map(|t| t.node());
        let [u, delta, a, b, c, d, bias] = all.map(|t| t.into_primitive());
        let inner = |u, delta, a, b, c, d, bias| ScanTensors {
            u,
            delta,
            a,
            b,
            c,
            d,
            bias,
        };
        match ScanBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = [u, delta, a, b, c, d, bias];
                let [u, delta, a, b, c, d, bias] = x.clone();
                let out = B::scan_forward(inner(u, delta, a, b, c, d, bias), config);
                prep.finish(
                    ScanState {
                        x,
                        ckpt: out.ckpt,
                        config,
                    },
                    out.y,
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::selective_scan(inner(u, delta, a, b, c, d, bias), config))
            }
        }
    }
}

/// Tuning of one call; the default chooses the work split from the problem size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Checkpoint chunks walked by one work item (0: automatic). Small values exercise the
    /// reduce-then-scan passes with many groups.
    pub group_chunks: usize,
    /// Largest storage binding in bytes (None: the device's limit). Batches whose buffers
    /// would be larger are split and run in pieces.
    pub max_binding_bytes: Option<u64>,
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
    let geo = input.check(order, options)?;
    let ScanInput {
        u,
        delta,
        a,
        b,
        c,
        d,
        bias,
    } = input;
    let per_item_bytes = (geo.floats_per_batch_item() as u64 * 4).max(1);
    let limit = options
        .max_binding_bytes
        .unwrap_or_else(crate::gpu::binding_limit);
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
    let config = ScanConfig {
        order,
        group_chunks: options.group_chunks,
    };
    let run = |u: Tensor<4>, delta: Tensor<4>, b: Tensor<4>, c: Tensor<4>| {
        let input = ScanInput {
            u,
            delta,
            a: a.clone(),
            b,
            c,
            d: d.clone(),
            bias: bias.clone(),
        };
        Tensor::from_dispatch(Dispatch::selective_scan(input.dispatch(), config))
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

impl ScanInput {
    /// Dtypes and shapes, as a geometry, or a message naming what does not fit.
    fn check(&self, order: ScanOrder, options: ScanOptions) -> Result<ScanGeometry, ShapeError> {
        for (name, dtype) in [
            ("u", self.u.dtype()),
            ("delta", self.delta.dtype()),
            ("A", self.a.dtype()),
            ("B", self.b.dtype()),
            ("C", self.c.dtype()),
            ("D", self.d.dtype()),
            ("delta bias", self.bias.dtype()),
        ] {
            if dtype != DType::F32 {
                return Err(ShapeError::new(
                    "selective scan",
                    format!("{name} is {dtype:?}; the scan runs in f32"),
                ));
            }
        }
        ScanGeometry::new(
            self.u.dims(),
            self.delta.dims(),
            self.a.dims(),
            self.b.dims(),
            self.c.dims(),
            self.d.dims()[0],
            self.bias.dims()[0],
            order,
            options.group_chunks,
        )
    }

    fn dispatch(&self) -> ScanTensors<Dispatch> {
        ScanTensors {
            u: self.u.clone().into_dispatch(),
            delta: self.delta.clone().into_dispatch(),
            a: self.a.clone().into_dispatch(),
            b: self.b.clone().into_dispatch(),
            c: self.c.clone().into_dispatch(),
            d: self.d.clone().into_dispatch(),
            bias: self.bias.clone().into_dispatch(),
        }
    }
}

/// Forward kernels alone (no autodiff), returning y and the checkpoints; for benchmarks.
pub fn scan_forward_raw(
    input: &ScanInput,
    order: ScanOrder,
    options: ScanOptions,
) -> Result<(Tensor<4>, Tensor<4>), ShapeError> {
    input.check(order, options)?;
    let config = ScanConfig {
        order,
        group_chunks: options.group_chunks,
    };
    let out = Dispatch::scan_forward(input.dispatch(), config);
    Ok((
        Tensor::from_dispatch(out.y),
        Tensor::from_dispatch(out.ckpt),
    ))
}

/// Gradients of the scan from the backward kernels alone (no autodiff).
#[derive(Debug, Clone)]
pub struct ScanInputGrads {
    pub du: Tensor<4>,
    pub ddelta: Tensor<4>,
    pub da: Tensor<2>,
    pub db: Tensor<4>,
    pub dc: Tensor<4>,
    pub dd: Tensor<1>,
    pub dbias: Tensor<1>,
}

/// Backward kernels alone (no autodiff) from checkpoints `ckpt` and output gradient `dy`.
/// For benchmarks and tests.
pub fn scan_backward_raw(
    input: &ScanInput,
    ckpt: Tensor<4>,
    dy: Tensor<4>,
    order: ScanOrder,
    options: ScanOptions,
) -> Result<ScanInputGrads, ShapeError> {
    let g = input.check(order, options)?;
    let want_ckpt = [g.batch * g.dirs, g.n_chunks, g.states_pad, g.channels];
    if ckpt.dims() != want_ckpt || dy.dims() != input.delta.dims() {
        return Err(ShapeError::new(
            "selective scan backward",
            format!(
                "checkpoints {:?} and dy {:?} do not belong to this input (expected {want_ckpt:?} and {:?})",
                ckpt.dims(),
                dy.dims(),
                input.delta.dims()
            ),
        ));
    }
    let config = ScanConfig {
        order,
        group_chunks: options.group_chunks,
    };
    let grads = Dispatch::scan_backward(
        input.dispatch(),
        ckpt.into_dispatch(),
        dy.into_dispatch(),
        config,
    );
    Ok(ScanInputGrads {
        du: Tensor::from_dispatch(grads.du),
        ddelta: Tensor::from_dispatch(grads.ddelta),
        da: Tensor::from_dispatch(grads.da),
        db: Tensor::from_dispatch(grads.db),
        dc: Tensor::from_dispatch(grads.dc),
        dd: Tensor::from_dispatch(grads.dd),
        dbias: Tensor::from_dispatch(grads.dbias),
    })
}
