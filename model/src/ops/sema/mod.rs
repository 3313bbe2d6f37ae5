//! SEMA window attention (MODEL-SPEC §B.2, §B.6) on the GPU, forward and backward, as a burn
//! op: per head and w_h × w_w window of the map, softmax attention of RoPE-rotated queries and
//! keys over the window's values. Layouts: qk (B, N, 2C) with q in channels [0, C) and k in
//! [C, 2C); v and the output (B, N, C); N = H·W tokens in row-major map order. The backward
//! kernels recompute the probabilities from the forward's row log-sum-exp, so no w²×w²
//! matrix is ever stored. SEMA's global mean term is added around this op ([`sema`]).

mod dims;
mod kernels;

pub use dims::{rope_table, rope_theta, AttnDims};

use crate::error::ShapeError;
use crate::ops::launch::MAX_WORKGROUPS;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch, ExtensionType};
use burn::tensor::{DType, Shape, Tensor};

/// Inputs of one attention call.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct AttnTensors<B: Backend> {
    pub qk: FloatTensor<B>,
    pub v: FloatTensor<B>,
}

/// Outputs of the forward kernel.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct AttnForward<B: Backend> {
    pub o: FloatTensor<B>,
    /// Row log-sum-exp of the scaled scores, (B, heads, N).
    pub lse: FloatTensor<B>,
}

/// Gradients with respect to qk and v.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct AttnGrads<B: Backend> {
    pub dqk: FloatTensor<B>,
    pub dv: FloatTensor<B>,
}

/// The map and window geometry of one call (the batch and channels come from the tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnConfig {
    pub height: usize,
    pub width: usize,
    pub heads: usize,
    /// Window extent per axis, clamped to the map.
    pub win_h: usize,
    pub win_w: usize,
    pub rope: bool,
}

impl AttnConfig {
    fn dims(&self, qk: &Shape) -> AttnDims {
        AttnDims {
            batch: qk[0],
            height: self.height,
            width: self.width,
            channels: qk[2] / 2,
            heads: self.heads,
            win_h: self.win_h,
            win_w: self.win_w,
            rope: self.rope,
        }
    }
}

fn forward_meta(x: &AttnTensorsMetadata, config: &AttnConfig) -> AttnForwardMetadata {
    let s = &x.qk.shape;
    AttnForwardMetadata {
        o: x.v.clone(),
        lse: TensorSpec::new(Shape::from(vec![s[0], config.heads, s[1]]), DType::F32),
    }
}

fn backward_meta(
    x: &AttnTensorsMetadata,
    _o: &TensorSpec,
    _lse: &TensorSpec,
    _dout: &TensorSpec,
    _config: &AttnConfig,
) -> AttnGradsMetadata {
    AttnGradsMetadata {
        dqk: x.qk.clone(),
        dv: x.v.clone(),
    }
}

/// The raw kernels, without autodiff.
#[backend_extension(Cube, Fusion)]
pub trait AttnKernels: Backend {
    #[fusion(meta = forward_meta)]
    fn window_attention_forward(
        #[extension_type] x: AttnTensors<Self>,
        config: AttnConfig,
    ) -> AttnForward<Self>;

    #[fusion(meta = backward_meta)]
    fn window_attention_backward(
        #[extension_type] x: AttnTensors<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        config: AttnConfig,
    ) -> AttnGrads<Self>;
}

/// The differentiable op.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait AttnOps: Backend {
    #[fusion(meta = |x, _config| x.v.clone())]
    fn window_attention(
        #[extension_type] x: AttnTensors<Self>,
        config: AttnConfig,
    ) -> FloatTensor<Self>;
}

#[derive(Debug, Clone)]
struct AttnState<B: Backend> {
    qk: FloatTensor<B>,
    v: FloatTensor<B>,
    o: FloatTensor<B>,
    lse: FloatTensor<B>,
    config: AttnConfig,
}

#[derive(Debug)]
struct AttnBackward;

impl<B: Backend + AttnKernels> Backward<B, 2> for AttnBackward {
    type State = AttnState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dout = grads.consume::<B>(&ops.node);
        let AttnState {
            qk,
            v,
            o,
            lse,
            config,
        } = ops.state;
        let g = B::window_attention_backward(AttnTensors { qk, v }, o, lse, dout, config);
        for (node, grad) in ops.parents.into_iter().zip([g.dqk, g.dv]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + AttnKernels + AttnOps, C: CheckpointStrategy> AttnOps for Autodiff<B, C> {
    fn window_attention(x: AttnTensors<Self>, config: AttnConfig) -> FloatTensor<Self> {
        let AttnTensors { qk, v } = x;
        let nodes = [qk.node(), v.node()];
        let (qk, v) = (qk.into_primitive(), v.into_primitive());
        match AttnBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::window_attention_forward(
                    AttnTensors {
                        qk: qk.clone(),
                        v: v.clone(),
                    },
                    config,
                );
                prep.finish(
                    AttnState {
                        qk,
                        v,
                        o: out.o.clone(),
                        lse: out.lse,
                        config,
                    },
                    out.o,
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::window_attention(AttnTensors { qk, v }, config))
            }
        }
    }
}

/// Windowed softmax attention of (B, N, 2C) queries|keys over (B, N, C) values on an
/// `height` × `width` map, `heads` heads, square windows of side `window` clamped to the map
/// (a window at least as large as the map is full attention); `rope` rotates q and k by MLLA's
/// 2-D RoPE first. Differentiable on an autodiff device.
pub fn window_attention(
    qk: Tensor<3>,
    v: Tensor<3>,
    height: usize,
    width: usize,
    heads: usize,
    window: usize,
    rope: bool,
) -> Result<Tensor<3>, ShapeError> {
    let config = check(&qk, &v, height, width, heads, window, rope)?;
    let x = AttnTensors {
        qk: qk.into_dispatch(),
        v: v.into_dispatch(),
    };
    Ok(Tensor::from_dispatch(Dispatch::window_attention(x, config)))
}

/// SEMA (MODEL-SPEC §B.2): [`window_attention`] plus, with `mean`, the arithmetic mean of v
/// over all N tokens added to every token (per batch item and channel).
#[allow(clippy::too_many_arguments)]
pub fn sema(
    qk: Tensor<3>,
    v: Tensor<3>,
    height: usize,
    width: usize,
    heads: usize,
    window: usize,
    rope: bool,
    mean: bool,
) -> Result<Tensor<3>, ShapeError> {
    let o = window_attention(qk, v.clone(), height, width, heads, window, rope)?;
    Ok(if mean { o + v.mean_dim(1) } else { o })
}

fn check(
    qk: &Tensor<3>,
    v: &Tensor<3>,
    height: usize,
    width: usize,
    heads: usize,
    window: usize,
    rope: bool,
) -> Result<AttnConfig, ShapeError> {
    let err = |m: String| ShapeError::new("SEMA attention", m);
    for (name, t) in [("qk", qk), ("v", v)] {
        if t.dtype() != DType::F32 {
            return Err(err(format!(
                "{name} is {:?}; attention runs in f32",
                t.dtype()
            )));
        }
    }
    let [b, n, c2] = qk.dims();
    let vd = v.dims();
    if vd != [b, n, c2 / 2] || !c2.is_multiple_of(2) {
        return Err(err(format!(
            "qk {:?} and v {vd:?}: expected (B, N, 2C) and (B, N, C)",
            qk.dims()
        )));
    }
    if n != height * width {
        return Err(err(format!("{n} tokens are not a {height}×{width} map")));
    }
    let d = AttnDims::new(b, height, width, c2 / 2, heads, window, rope).map_err(err)?;
    let hd = d.head_dim();
    if !kernels::HEAD_DIMS.contains(&hd) {
        return Err(err(format!(
            "head dimension {hd} (C {} / {heads} heads); the kernels take {:?}",
            c2 / 2,
            kernels::HEAD_DIMS
        )));
    }
    let tiles = d.win_h * d.win_w;
    if d.windows() * tiles.div_ceil(kernels::WORKGROUP) > MAX_WORKGROUPS
        || heads > MAX_WORKGROUPS
        || b > MAX_WORKGROUPS
    {
        return Err(err(format!(
            "{} windows of {}×{} on a batch of {b} exceed the dispatch limit",
            d.windows(),
            d.win_h,
            d.win_w
        )));
    }
    let bytes = (b * n * c2 * 4) as u64;
    let limit = crate::gpu::binding_limit();
    if bytes > limit {
        return Err(err(format!(
            "q|k of {bytes} bytes exceed this GPU's storage-binding limit of {limit} bytes; use a smaller batch"
        )));
    }
    Ok(AttnConfig {
        height,
        width,
        heads,
        win_h: d.win_h,
        win_w: d.win_w,
        rope,
    })
}
