//! 2-D convolutions on the GPU, forward and backward, as burn ops: the dense convolutions of
//! stride 1 (USEMA's 3×3 and 1×1, RFAConv's and VM-UNet's 1×1) as an implicit GEMM
//! (`shaders/conv_gemm.wgsl`, which also gives their input gradient, and `conv_wgrad.wgsl`), and
//! the weight gradient of depthwise convolutions (`conv_depthwise_wgrad.wgsl`; their forward and
//! input gradient are burn's depthwise routine). burn's own kernels for these cases have no fast
//! path on WGSL: its weight gradient in particular runs as a direct convolution whose kernel is
//! the whole image, with one invocation per weight. [`conv2d`] picks ours where they apply and
//! burn's otherwise (and on CPU adapters, [`ConvImpl`]); `MEDSEG_CONV=burn` sends every
//! convolution to burn's, for comparing the two, `MEDSEG_CONV=ours` takes ours on CPUs too.
//! The CPU twin is `reference::conv`.

use crate::ops::launch::{empty, expect_len, launch, MAX_WORKGROUPS};
use crate::shaders;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::ModuleOps;
use burn::backend::wgpu::{into_contiguous, CubeBackend};
use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Shape, Tensor};

/// The geometry of one convolution with square K × K filters, one stride and one zero padding
/// for both axes; the tensors are x (B, Cin, H, W), weight (Cout, Cin / groups, K, K) and the
/// output (B, Cout, Ho, Wo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub batch: usize,
    pub cin: usize,
    pub height: usize,
    pub width: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Output channels and pixels of one workgroup of the GEMM kernels.
const TILE: usize = 64;
const WORKGROUP: u32 = 256;

impl ConvGeom {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.pad - self.k) / self.stride + 1
    }

    fn out_dims(&self) -> Vec<usize> {
        vec![self.batch, self.cout, self.out_height(), self.out_width()]
    }

    fn pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Rows of the dense column matrix, Cin · K².
    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// The convolution that gives a stride-1 convolution's input gradient: the output
    /// gradient (B, Cout, Ho, Wo) convolved into (B, Cin, H, W) with the flipped, transposed
    /// weights.
    fn transposed(&self) -> ConvGeom {
        ConvGeom {
            batch: self.batch,
            cin: self.cout,
            height: self.out_height(),
            width: self.out_width(),
            cout: self.cin,
            k: self.k,
            stride: 1,
            pad: self.k - 1 - self.pad,
        }
    }

    /// Splits of the (image, pixel) pairs for a weight gradient: enough workgroups to fill a
    /// large GPU (`target` over `tiles` per split), none shorter than `min_chunk` pairs.
    /// Returns (splits, pairs per split).
    fn split(&self, tiles: usize, target: usize, min_chunk: usize) -> (usize, usize) {
        let pairs = self.batch * self.pixels();
        let wanted = target.div_ceil(tiles.max(1)).max(1);
        let most = pairs.div_ceil(min_chunk).max(1);
        let chunk = pairs.div_ceil(wanted.min(most)).next_multiple_of(16);
        (pairs.div_ceil(chunk), chunk)
    }

    fn dense_split(&self) -> (usize, usize) {
        let tiles = self.cout.div_ceil(TILE) * self.rows().div_ceil(TILE);
        self.split(tiles, 1024, 256)
    }

    fn depthwise_split(&self) -> (usize, usize) {
        self.split(self.cout, 2048, 1024)
    }

    fn options(&self, groups: usize) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.pad; 2], [1, 1], groups)
    }

    fn words(&self, chunk: usize) -> Vec<u32> {
        [
            self.batch,
            self.cin,
            self.height,
            self.width,
            self.cout,
            self.out_height(),
            self.out_width(),
            self.k,
            self.stride,
            self.pad,
            chunk,
            self.cout / self.cin,
        ]
        .map(|v| v as u32)
        .to_vec()
    }
}

fn spec(dims: Vec<usize>) -> TensorSpec {
    TensorSpec::new(Shape::from(dims), DType::F32)
}

/// The raw kernels, without autodiff.
#[backend_extension(Cube, Fusion)]
pub trait ConvKernels: Backend {
    /// Dense convolution with bias: (B, Cout, Ho, Wo).
    #[fusion(meta = |_x, _w, _b, g| spec(g.out_dims()))]
    fn conv_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self>;

    /// Per-split weight gradient of a dense convolution: (S, Cout, Cin · K²).
    #[fusion(meta = |_x, _dy, g| spec(vec![g.dense_split().0, g.cout, g.rows()]))]
    fn conv_wgrad(x: FloatTensor<Self>, dy: FloatTensor<Self>, geom: ConvGeom)
        -> FloatTensor<Self>;

    /// Per-split weight gradient of a depthwise convolution: (S, Cout, K²).
    #[fusion(meta = |_x, _dy, g| spec(vec![g.depthwise_split().0, g.cout, g.k * g.k]))]
    fn conv_depthwise_wgrad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self>;
}

/// The differentiable ops.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait ConvOps: Backend {
    #[fusion(meta = |_x, _w, _b, g| spec(g.out_dims()))]
    fn conv_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self>;

    #[fusion(meta = |_x, _w, _b, g| spec(g.out_dims()))]
    fn conv_depthwise(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self>;
}

impl ConvKernels for CubeBackend {
    fn conv_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        g: ConvGeom,
    ) -> FloatTensor<Self> {
        let [x, weight, bias] = [x, weight, bias].map(into_contiguous);
        expect_len(&x, g.batch * g.cin * g.height * g.width, "x");
        expect_len(&weight, g.cout * g.rows(), "weight");
        expect_len(&bias, g.cout, "bias");
        let out = empty(&x, g.out_dims());
        let count = [g.pixels().div_ceil(TILE), g.cout.div_ceil(TILE), g.batch];
        launch(
            &shaders::CONV_GEMM,
            WORKGROUP,
            count,
            &[&x, &weight, &bias, &out],
            &g.words(0),
        );
        out
    }

    fn conv_wgrad(x: FloatTensor<Self>, dy: FloatTensor<Self>, g: ConvGeom) -> FloatTensor<Self> {
        let [x, dy] = [x, dy].map(into_contiguous);
        expect_len(&x, g.batch * g.cin * g.height * g.width, "x");
        expect_len(&dy, g.batch * g.cout * g.pixels(), "dy");
        let (splits, chunk) = g.dense_split();
        let partial = empty(&x, vec![splits, g.cout, g.rows()]);
        let count = [splits, g.cout.div_ceil(TILE), g.rows().div_ceil(TILE)];
        launch(
            &shaders::CONV_WGRAD,
            WORKGROUP,
            count,
            &[&x, &dy, &partial],
            &g.words(chunk),
        );
        partial
    }

    fn conv_depthwise_wgrad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        g: ConvGeom,
    ) -> FloatTensor<Self> {
        let [x, dy] = [x, dy].map(into_contiguous);
        expect_len(&x, g.batch * g.cin * g.height * g.width, "x");
        expect_len(&dy, g.batch * g.cout * g.pixels(), "dy");
        let (splits, chunk) = g.depthwise_split();
        let partial = empty(&x, vec![splits, g.cout, g.k * g.k]);
        launch(
            &shaders::CONV_DEPTHWISE_WGRAD,
            WORKGROUP,
            [splits, g.cout, 1],
            &[&x, &dy, &partial],
            &g.words(chunk),
        );
        partial
    }
}

impl ConvOps for CubeBackend {
    fn conv_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self> {
        Self::conv_gemm(x, weight, bias, geom)
    }

    fn conv_depthwise(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), geom.options(geom.cin))
    }
}

#[derive(Debug, Clone)]
struct ConvState<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    geom: ConvGeom,
}

/// Σ over images and pixels of the output gradient: the bias gradient (Cout).
fn bias_grad<B: Backend>(dy: FloatTensor<B>, g: &ConvGeom) -> FloatTensor<B> {
    let dy = B::float_reshape(dy, Shape::from(vec![g.batch, g.cout, g.pixels()]));
    let db = B::float_sum_dim(B::float_sum_dim(dy, 2), 0);
    B::float_reshape(db, Shape::from(vec![g.cout]))
}

/// The per-split partial weight gradients summed and shaped as the weights.
fn sum_splits<B: Backend>(partial: FloatTensor<B>, dims: Vec<usize>) -> FloatTensor<B> {
    B::float_reshape(B::float_sum_dim(partial, 0), Shape::from(dims))
}

/// The backward pass of either op: the bias gradient is the same, the weight and input
/// gradients differ by kind.
#[derive(Debug)]
enum ConvBackward {
    Dense,
    Depthwise,
}

impl<B: Backend + ConvKernels> Backward<B, 3> for ConvBackward {
    type State = ConvState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<B>(&ops.node);
        let ConvState { x, weight, geom: g } = ops.state;
        let [px, pw, pb] = ops.parents;
        if let Some(node) = pb {
            grads.register::<B>(node.id, bias_grad::<B>(dy.clone(), &g));
        }
        if let Some(node) = pw {
            let dw = match self {
                ConvBackward::Dense => sum_splits::<B>(
                    B::conv_wgrad(x, dy.clone(), g),
                    vec![g.cout, g.cin, g.k, g.k],
                ),
                ConvBackward::Depthwise => sum_splits::<B>(
                    B::conv_depthwise_wgrad(x, dy.clone(), g),
                    vec![g.cout, 1, g.k, g.k],
                ),
            };
            grads.register::<B>(node.id, dw);
        }
        let Some(node) = px else { return };
        let flipped = B::float_flip(weight, &[2, 3]);
        let dx = match self {
            // (Cout, Cin, K, K) → (Cin, Cout, K, K), flipped in both spatial axes.
            ConvBackward::Dense => {
                let flipped = B::float_swap_dims(flipped, 0, 1);
                let zero = B::float_zeros(Shape::from(vec![g.cin]), &dy.device(), FloatDType::F32);
                B::conv_gemm(dy, flipped, zero, g.transposed())
            }
            // Input channel c gathers its `multiplier` output channels, each through its own
            // flipped filter: a grouped stride-1 convolution of dy with Cin groups.
            ConvBackward::Depthwise => {
                let m = g.cout / g.cin;
                let flipped = B::float_reshape(flipped, Shape::from(vec![g.cin, m, g.k, g.k]));
                B::conv2d(dy, flipped, None, g.transposed().options(g.cin))
            }
        };
        grads.register::<B>(node.id, dx);
    }
}

/// A forward kernel of the inner backend: (x, weight, bias, geometry) → output.
type ForwardFn<B> = fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, ConvGeom) -> FloatTensor<B>;

/// The autodiff route shared by both ops: `forward` on the inner backend, `backward` kept.
fn tracked<B, C>(
    kind: ConvBackward,
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    geom: ConvGeom,
    forward: ForwardFn<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend + ConvKernels,
    C: CheckpointStrategy,
{
    let nodes = [x.node(), weight.node(), bias.node()];
    let (x, weight, bias) = (
        x.into_primitive(),
        weight.into_primitive(),
        bias.into_primitive(),
    );
    match kind.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = forward(x.clone(), weight.clone(), bias, geom);
            prep.finish(ConvState { x, weight, geom }, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x, weight, bias, geom)),
    }
}

impl<B: Backend + ConvKernels + ConvOps, C: CheckpointStrategy> ConvOps for Autodiff<B, C> {
    fn conv_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(ConvBackward::Dense, x, weight, bias, geom, B::conv_gemm)
    }

    fn conv_depthwise(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(
            ConvBackward::Depthwise,
            x,
            weight,
            bias,
            geom,
            B::conv_depthwise,
        )
    }
}

/// Which implementation a convolution takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvRoute {
    /// `conv_gemm` forward and input gradient, `conv_wgrad` weight gradient.
    Dense(ConvGeom),
    /// burn's depthwise forward and input gradient, `conv_depthwise_wgrad` weight gradient.
    Depthwise(ConvGeom),
    /// burn's own convolution.
    Burn,
}

/// Which convolution [`conv2d_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvImpl {
    /// Ours where [`route`] allows, on a GPU; burn's on a CPU adapter (lavapipe), where the
    /// GEMM tiles' padding (64 channels a tile) costs real time and burn's direct convolution
    /// does only the needed work. `MEDSEG_CONV=burn` / `ours` forces either everywhere.
    Auto,
    /// Ours where [`route`] allows, on any adapter.
    Ours,
    /// burn's own convolution.
    Burn,
}

impl ConvImpl {
    fn resolve(self) -> ConvImpl {
        static FORCED: std::sync::OnceLock<Option<ConvImpl>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| match std::env::var("MEDSEG_CONV").as_deref() {
            Ok("burn") => Some(ConvImpl::Burn),
            Ok("ours") => Some(ConvImpl::Ours),
            _ => None,
        });
        match (self, forced) {
            (ConvImpl::Auto, Some(f)) => f,
            // In the browser burn's convolutions go through its matmul kernels, which do not
            // compile there (see `linear_t`): ours on every adapter.
            (ConvImpl::Auto, None)
                if crate::gpu::on_software_adapter() && !cfg!(target_arch = "wasm32") =>
            {
                ConvImpl::Burn
            }
            (ConvImpl::Auto, None) => ConvImpl::Ours,
            (which, _) => which,
        }
    }
}

/// The route [`conv2d`] takes for these shapes (ours only for f32, square filters, one
/// stride of 1, padding below the filter size, no dilation, and sizes the kernels index).
pub fn route(x: &[usize; 4], weight: &[usize; 4], options: &ConvOptions<2>) -> ConvRoute {
    let [batch, cin, height, width] = *x;
    let [cout, per_group, k, k2] = *weight;
    let groups = options.groups;
    let [(pad, pad_end), (pad2, pad2_end)] = options.padding;
    let shaped = k == k2
        && pad == pad2
        && pad == pad_end
        && pad2 == pad2_end
        && pad < k
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && height + 2 * pad >= k
        && width + 2 * pad >= k
        && batch > 0
        && cin > 0
        && cout > 0;
    if !shaped {
        return ConvRoute::Burn;
    }
    let geom = ConvGeom {
        batch,
        cin,
        height,
        width,
        cout,
        k,
        stride: 1,
        pad,
    };
    let limit = crate::gpu::binding_limit() as usize / 4;
    let fits = batch * cin * height * width <= limit
        && batch * cout * geom.pixels() <= limit
        && geom.pixels().div_ceil(TILE) <= MAX_WORKGROUPS
        && batch <= MAX_WORKGROUPS;
    if !fits {
        return ConvRoute::Burn;
    }
    if groups == 1 && per_group == cin {
        let (splits, _) = geom.dense_split();
        if splits * cout * geom.rows() <= limit && geom.rows() <= limit {
            return ConvRoute::Dense(geom);
        }
    } else if groups == cin && per_group == 1 && cout % cin == 0 && k <= 3 && cout <= MAX_WORKGROUPS
    {
        return ConvRoute::Depthwise(geom);
    }
    ConvRoute::Burn
}

/// burn's `conv2d` with the same arguments, on our kernels where [`route`] says so and
/// [`ConvImpl::Auto`] picks them. Differentiable on an autodiff device.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    conv2d_with(x, weight, bias, options, ConvImpl::Auto)
}

/// [`conv2d`] with the implementation chosen by the caller (tests, benchmarks).
pub fn conv2d_with(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
    which: ConvImpl,
) -> Tensor<4> {
    let ours = which.resolve() == ConvImpl::Ours
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32;
    let r = if ours {
        route(&x.dims(), &weight.dims(), &options)
    } else {
        ConvRoute::Burn
    };
    let geom = match r {
        ConvRoute::Dense(g) | ConvRoute::Depthwise(g) => g,
        ConvRoute::Burn => return burn::tensor::module::conv2d(x, weight, bias, options),
    };
    let bias = bias.unwrap_or_else(|| Tensor::zeros([geom.cout], &x.device()));
    let (x, w, b) = (
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    );
    Tensor::from_dispatch(match r {
        ConvRoute::Dense(_) => Dispatch::conv_dense(x, w, b, geom),
        _ => Dispatch::conv_depthwise(x, w, b, geom),
    })
}

/// The linear layers' product `x · wᵀ` for x (M, K) and w (N, K): (M, N). In the browser it runs
/// on our GEMM kernel (as a 1×1 convolution with x as the filters), because burn's matrix multiply
/// kernels do not compile there (its runtime writes `enable subgroups;` into them and the
/// browser's device cannot have that feature through wgpu); elsewhere it is burn's matmul.
pub fn linear_t(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    linear_t_with(x, w, linear_on_gemm())
}

/// Whether the linear layers take our GEMM kernel: in the browser, or when `MEDSEG_LINEAR=ours`
/// (to check the browser's route on a desktop adapter).
fn linear_on_gemm() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| {
        cfg!(target_arch = "wasm32") || std::env::var("MEDSEG_LINEAR").is_ok_and(|v| v == "ours")
    })
}

/// [`linear_t`] with the kernel chosen by the caller (`ours`: the GEMM kernel on any adapter).
pub fn linear_t_with(x: Tensor<2>, w: Tensor<2>, ours: bool) -> Tensor<2> {
    if !ours {
        return x.matmul(w.transpose());
    }
    // x as the filters (M filters of K channels) over wᵀ as a 1-pixel-high image of N pixels:
    // the output (1, M, 1, N) is x · wᵀ already in its row-major layout.
    let [m, k] = x.dims();
    let [n, _] = w.dims();
    let y = conv2d_with(
        w.transpose().reshape([1, k, 1, n]),
        x.reshape([m, k, 1, 1]),
        None,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ConvImpl::Ours,
    );
    y.reshape([m, n])
}

/// Per-direction projections `x_d · w_dᵀ` for x (B, D or 1, L, K) (one input shared by every
/// direction when its second axis is 1) and w (D, N, K): (B, D, L, N), through [`linear_t`].
pub fn linear_t_per_direction(x: Tensor<4>, w: Tensor<3>) -> Tensor<4> {
    let [b, dx, l, k] = x.dims();
    let [d, n, _] = w.dims();
    if !linear_on_gemm() {
        return x.matmul(w.swap_dims(1, 2).unsqueeze_dim::<4>(0));
    }
    let parts = (0..d)
        .map(|i| {
            let xi = if dx == 1 {
                x.clone()
            } else {
                x.clone().narrow(1, i, 1)
            };
            let wi = w.clone().narrow(0, i, 1).reshape([n, k]);
            linear_t(xi.reshape([b * l, k]), wi).reshape([b, 1, l, n])
        })
        .collect();
    Tensor::cat(parts, 1)
}
