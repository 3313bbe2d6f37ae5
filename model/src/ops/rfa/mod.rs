//! RFAConv's receptive-field attention (MODEL-SPEC §A.4.8) on the GPU, forward and backward, as
//! a burn op: the grouped 1×1 convolution of the pooled input into nine logits per channel, the
//! softmax over the nine, and the weighting of the nine receptive-field features, in one kernel
//! (`shaders/rfa_attention.wgsl`); the backward kernel recomputes the softmax. Layouts: pooled
//! (B, C, H, W), alpha (9C), features and output (B, 9C, H, W) with tap k of channel c at 9c + k.

use crate::error::ShapeError;
use crate::ops::launch::{empty, expect_len, launch, MAX_WORKGROUPS};
use crate::shaders;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::wgpu::{into_contiguous, CubeBackend};
use burn::backend::{
    backend_extension, tensor::FloatTensor, Backend, Dispatch, ExtensionType, TensorMetadata,
};
use burn::tensor::{DType, Shape, Tensor};

/// Inputs of the attention.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct RfaTensors<B: Backend> {
    pub pooled: FloatTensor<B>,
    pub alpha: FloatTensor<B>,
    pub feat: FloatTensor<B>,
}

/// Gradients of the inputs; `dterm` (B, 9C, P) sums over batch and pixels to the gradient of
/// alpha.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct RfaGrads<B: Backend> {
    pub dpooled: FloatTensor<B>,
    pub dfeat: FloatTensor<B>,
    pub dterm: FloatTensor<B>,
}

fn backward_meta(x: &RfaTensorsMetadata, _dout: &TensorSpec) -> RfaGradsMetadata {
    RfaGradsMetadata {
        dpooled: x.pooled.clone(),
        dfeat: x.feat.clone(),
        dterm: x.feat.clone(),
    }
}

/// The raw kernels, without autodiff.
#[backend_extension(Cube, Fusion)]
pub trait RfaKernels: Backend {
    #[fusion(meta = |x| x.feat.clone())]
    fn rfa_attention_forward(#[extension_type] x: RfaTensors<Self>) -> FloatTensor<Self>;

    #[fusion(meta = backward_meta)]
    fn rfa_attention_backward(
        #[extension_type] x: RfaTensors<Self>,
        dout: FloatTensor<Self>,
    ) -> RfaGrads<Self>;
}

/// The differentiable op.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait RfaOps: Backend {
    #[fusion(meta = |x| x.feat.clone())]
    fn rfa_attention(#[extension_type] x: RfaTensors<Self>) -> FloatTensor<Self>;
}

const WORKGROUP: usize = 256;

/// (B, C, P) of a pooled tensor (B, C, H, W).
fn sizes(pooled: &Shape) -> (usize, usize, usize) {
    (pooled[0], pooled[1], pooled[2] * pooled[3])
}

fn words(b: usize, c: usize, p: usize) -> (Vec<u32>, [usize; 3]) {
    let total = b * c * p;
    let groups = total.div_ceil(WORKGROUP).clamp(1, MAX_WORKGROUPS);
    (vec![total as u32, c as u32, p as u32], [groups, 1, 1])
}

impl RfaKernels for CubeBackend {
    fn rfa_attention_forward(x: RfaTensors<Self>) -> FloatTensor<Self> {
        let [pooled, alpha, feat] = [x.pooled, x.alpha, x.feat].map(into_contiguous);
        let (b, c, p) = sizes(pooled.meta.shape());
        expect_len(&alpha, 9 * c, "alpha");
        expect_len(&feat, b * 9 * c * p, "feat");
        let out = empty(&feat, feat.meta.shape().to_vec());
        let (params, count) = words(b, c, p);
        launch(
            &shaders::RFA_ATTENTION,
            WORKGROUP as u32,
            count,
            &[&pooled, &alpha, &feat, &out],
            &params,
        );
        out
    }

    fn rfa_attention_backward(x: RfaTensors<Self>, dout: FloatTensor<Self>) -> RfaGrads<Self> {
        let [pooled, alpha, feat, dout] = [x.pooled, x.alpha, x.feat, dout].map(into_contiguous);
        let (b, c, p) = sizes(pooled.meta.shape());
        expect_len(&alpha, 9 * c, "alpha");
        expect_len(&feat, b * 9 * c * p, "feat");
        expect_len(&dout, b * 9 * c * p, "dout");
        let dpooled = empty(&pooled, pooled.meta.shape().to_vec());
        let dfeat = empty(&feat, feat.meta.shape().to_vec());
        let dterm = empty(&feat, feat.meta.shape().to_vec());
        let (params, count) = words(b, c, p);
        launch(
            &shaders::RFA_ATTENTION_BACKWARD,
            WORKGROUP as u32,
            count,
            &[&pooled, &alpha, &feat, &dout, &dpooled, &dfeat, &dterm],
            &params,
        );
        RfaGrads {
            dpooled,
            dfeat,
            dterm,
        }
    }
}

impl RfaOps for CubeBackend {
    fn rfa_attention(x: RfaTensors<Self>) -> FloatTensor<Self> {
        Self::rfa_attention_forward(x)
    }
}

#[derive(Debug, Clone)]
struct RfaState<B: Backend> {
    pooled: FloatTensor<B>,
    alpha: FloatTensor<B>,
    feat: FloatTensor<B>,
}

#[derive(Debug)]
struct RfaBackward;

impl<B: Backend + RfaKernels> Backward<B, 3> for RfaBackward {
    type State = RfaState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dout = grads.consume::<B>(&ops.node);
        let RfaState {
            pooled,
            alpha,
            feat,
        } = ops.state;
        let shape = feat.shape();
        let g = B::rfa_attention_backward(
            RfaTensors {
                pooled,
                alpha,
                feat,
            },
            dout,
        );
        // dalpha[9c + k] = Σ_b Σ_p dterm[b, 9c + k, p].
        let (b, c9, p) = (shape[0], shape[1], shape[2] * shape[3]);
        let dterm = B::float_reshape(g.dterm, Shape::from(vec![b, c9, p]));
        let dalpha = B::float_sum_dim(B::float_sum_dim(dterm, 2), 0);
        let dalpha = B::float_reshape(dalpha, Shape::from(vec![c9]));
        for (node, grad) in ops.parents.into_iter().zip([g.dpooled, dalpha, g.dfeat]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + RfaKernels + RfaOps, C: CheckpointStrategy> RfaOps for Autodiff<B, C> {
    fn rfa_attention(x: RfaTensors<Self>) -> FloatTensor<Self> {
        let RfaTensors {
            pooled,
            alpha,
            feat,
        } = x;
        let nodes = [pooled.node(), alpha.node(), feat.node()];
        let (pooled, alpha, feat) = (
            pooled.into_primitive(),
            alpha.into_primitive(),
            feat.into_primitive(),
        );
        match RfaBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::rfa_attention_forward(RfaTensors {
                    pooled: pooled.clone(),
                    alpha: alpha.clone(),
                    feat: feat.clone(),
                });
                prep.finish(
                    RfaState {
                        pooled,
                        alpha,
                        feat,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rfa_attention(RfaTensors {
                pooled,
                alpha,
                feat,
            })),
        }
    }
}

/// `feat · softmax_k(alpha[9c + k] · pooled[c])` per pixel: pooled (B, C, H, W), alpha (9C),
/// feat (B, 9C, H, W) → (B, 9C, H, W). Differentiable on an autodiff device.
pub fn rfa_attention(
    pooled: Tensor<4>,
    alpha: Tensor<1>,
    feat: Tensor<4>,
) -> Result<Tensor<4>, ShapeError> {
    let err = |m: String| ShapeError::new("RFAConv attention", m);
    for (name, dtype) in [
        ("pooled", pooled.dtype()),
        ("alpha", alpha.dtype()),
        ("feat", feat.dtype()),
    ] {
        if dtype != DType::F32 {
            return Err(err(format!("{name} is {dtype:?}; the kernel runs in f32")));
        }
    }
    let [b, c, h, w] = pooled.dims();
    let [a] = alpha.dims();
    let fd = feat.dims();
    if a != 9 * c || fd != [b, 9 * c, h, w] {
        return Err(err(format!(
            "pooled {:?}, alpha [{a}], feat {fd:?}: expected (B, C, H, W), (9C) and (B, 9C, H, W)",
            [b, c, h, w]
        )));
    }
    let bytes = (b * 9 * c * h * w * 4) as u64;
    let limit = crate::gpu::binding_limit();
    if bytes > limit {
        return Err(err(format!(
            "features of {bytes} bytes exceed this GPU's storage-binding limit of {limit} bytes; use a smaller batch"
        )));
    }
    let x = RfaTensors {
        pooled: pooled.into_dispatch(),
        alpha: alpha.into_dispatch(),
        feat: feat.into_dispatch(),
    };
    Ok(Tensor::from_dispatch(Dispatch::rfa_attention(x)))
}
