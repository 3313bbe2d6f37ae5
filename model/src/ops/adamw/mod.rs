//! The AdamW update of one flattened parameter tensor as a single WGSL kernel launch
//! (`shaders/adamw.wgsl`), instead of a dozen tensor ops per parameter.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch, ExtensionType};
use burn::tensor::Tensor;

/// Parameter, gradient and moments (all the same length), or the updated parameter and
/// moments (g unused on output).
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct AdamwTensors<B: Backend> {
    pub p: FloatTensor<B>,
    pub g: FloatTensor<B>,
    pub m: FloatTensor<B>,
    pub v: FloatTensor<B>,
}

/// Updated parameter and moments.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct AdamwOut<B: Backend> {
    pub p: FloatTensor<B>,
    pub m: FloatTensor<B>,
    pub v: FloatTensor<B>,
}

/// The per-step scalars as f32 bits: 1 − lr·wd, lr / bc1, β1, β2, 1 / bc2, ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdamwStep {
    pub words: [u32; 6],
}

impl AdamwStep {
    /// Scalars of step `t` (1-based) at learning rate `lr`, computed in f64.
    pub fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, t: u32) -> Self {
        let bc1 = 1.0 - beta1.powi(t as i32);
        let bc2 = 1.0 - beta2.powi(t as i32);
        let f = |x: f64| (x as f32).to_bits();
        AdamwStep {
            words: [
                f(1.0 - lr * weight_decay),
                f(lr / bc1),
                f(beta1),
                f(beta2),
                f(1.0 / bc2),
                f(eps),
            ],
        }
    }
}

fn out_meta(x: &AdamwTensorsMetadata, _s: &AdamwStep) -> AdamwOutMetadata {
    let spec = |t: &TensorSpec| t.clone();
    AdamwOutMetadata {
        p: spec(&x.p),
        m: spec(&x.p),
        v: spec(&x.p),
    }
}

#[backend_extension(Cube, Fusion)]
pub trait AdamwKernels: Backend {
    #[fusion(meta = out_meta)]
    fn adamw_update(#[extension_type] x: AdamwTensors<Self>, step: AdamwStep) -> AdamwOut<Self>;
}

mod kernels {
    use super::{AdamwKernels, AdamwOut, AdamwStep, AdamwTensors};
    use crate::ops::launch::{empty, expect_len, launch, MAX_WORKGROUPS};
    use crate::shaders;
    use burn::backend::wgpu::{into_contiguous, CubeBackend};

    const WORKGROUP: usize = 256;

    impl AdamwKernels for CubeBackend {
        fn adamw_update(x: AdamwTensors<Self>, step: AdamwStep) -> AdamwOut<Self> {
            let [p, g, m, v] = [x.p, x.g, x.m, x.v].map(into_contiguous);
            let n = p.meta.shape().num_elements();
            for (t, name) in [(&g, "g"), (&m, "m"), (&v, "v")] {
                expect_len(t, n, name);
            }
            let (po, mo, vo) = (empty(&p, vec![n]), empty(&p, vec![n]), empty(&p, vec![n]));
            let mut words = vec![n as u32];
            words.extend(step.words);
            let groups = n.div_ceil(WORKGROUP).clamp(1, MAX_WORKGROUPS);
            launch(
                &shaders::ADAMW,
                WORKGROUP as u32,
                [groups, 1, 1],
                &[&p, &g, &m, &v, &po, &mo, &vo],
                &words,
            );
            AdamwOut {
                p: po,
                m: mo,
                v: vo,
            }
        }
    }
}

/// One AdamW update of a flattened parameter `p` with gradient `g` and moments `m`, `v` (all
/// of one length, on one device, outside autodiff): the new (p, m, v).
pub fn adamw_update(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    step: AdamwStep,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let out = Dispatch::adamw_update(
        AdamwTensors {
            p: p.into_dispatch(),
            g: g.into_dispatch(),
            m: m.into_dispatch(),
            v: v.into_dispatch(),
        },
        step,
    );
    (
        Tensor::from_dispatch(out.p),
        Tensor::from_dispatch(out.m),
        Tensor::from_dispatch(out.v),
    )
}
