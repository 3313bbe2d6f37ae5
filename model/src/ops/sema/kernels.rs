//! Launching the SEMA window-attention kernels.

use super::{rope_table, AttnDims};
use super::{AttnConfig, AttnForward, AttnGrads, AttnKernels, AttnOps, AttnTensors};
use crate::ops::launch::{empty, expect_len, launch_kernel, Wgsl};
use crate::shaders::{self, ShaderFile};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{into_contiguous, CubeBackend, CubeTensor};
use burn::tensor::Shape;

type Cb = CubeBackend;

/// Invocations per workgroup (WG in sema_common.wgsl).
pub const WORKGROUP: usize = 64;
/// Head dimensions the kernels are specialised for (two TILE × D tiles in 8 KiB).
pub const HEAD_DIMS: [usize; 4] = [8, 16, 32, 64];

fn kernel(file: &'static ShaderFile, head_dim: usize) -> Wgsl {
    Wgsl {
        file,
        replace: Some((
            "const D: u32 = 32u;",
            format!("const D: u32 = {head_dim}u;"),
        )),
    }
}

fn words(d: &AttnDims) -> Vec<u32> {
    let scale = 1.0f32 / (d.head_dim() as f32).sqrt();
    vec![
        d.batch as u32,
        d.height as u32,
        d.width as u32,
        d.channels as u32,
        d.heads as u32,
        d.win_h as u32,
        d.win_w as u32,
        d.windows_x() as u32,
        (d.win_h * d.win_w).div_ceil(WORKGROUP) as u32,
        scale.to_bits(),
        d.rope as u32,
        (d.channels / 4) as u32,
    ]
}

/// The (cos, sin) table in f32 from f64 angles (at least one element).
fn rope_buffer(like: &CubeTensor, d: &AttnDims) -> CubeTensor {
    let table: Vec<f32> = if d.rope {
        rope_table(d.height.max(d.width), d.channels)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    } else {
        vec![0.0]
    };
    let handle = like.client.create_from_slice(bytemuck::cast_slice(&table));
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        burn::tensor::Shape::from(vec![table.len()]),
        handle,
        burn::tensor::DType::F32,
    )
}

fn count(d: &AttnDims) -> [usize; 3] {
    [
        d.windows() * (d.win_h * d.win_w).div_ceil(WORKGROUP),
        d.heads,
        d.batch,
    ]
}

impl AttnKernels for CubeBackend {
    fn window_attention_forward(x: AttnTensors<Self>, config: AttnConfig) -> AttnForward<Self> {
        let qk = into_contiguous(x.qk);
        let v = into_contiguous(x.v);
        let d = config.dims(qk.meta.shape());
        let (b, n, c) = (d.batch, d.tokens(), d.channels);
        expect_len(&qk, b * n * 2 * c, "qk");
        expect_len(&v, b * n * c, "v");
        let rope = rope_buffer(&qk, &d);
        let o = empty(&v, vec![b, n, c]);
        let lse = empty(&v, vec![b, d.heads, n]);
        launch_kernel(
            kernel(&shaders::SEMA_FORWARD, d.head_dim()),
            WORKGROUP as u32,
            count(&d),
            &[&rope, &qk, &v, &o, &lse],
            &words(&d),
        );
        AttnForward { o, lse }
    }

    fn window_attention_backward(
        x: AttnTensors<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        config: AttnConfig,
    ) -> AttnGrads<Self> {
        let qk = into_contiguous(x.qk);
        let v = into_contiguous(x.v);
        let o = into_contiguous(o);
        let lse = into_contiguous(lse);
        let dout = into_contiguous(dout);
        let d = config.dims(qk.meta.shape());
        let (b, n, c) = (d.batch, d.tokens(), d.channels);
        expect_len(&qk, b * n * 2 * c, "qk");
        for (t, name) in [(&v, "v"), (&o, "o"), (&dout, "dout")] {
            expect_len(t, b * n * c, name);
        }
        expect_len(&lse, b * d.heads * n, "lse");
        let rope = rope_buffer(&qk, &d);
        // [lse | delta]: the query kernel reads lse and writes delta for the key/value kernel.
        let rows = b * d.heads * n;
        let stats = into_contiguous(Cb::float_cat(
            vec![
                Cb::float_reshape(lse, Shape::from(vec![rows])),
                empty(&v, vec![rows]),
            ],
            0,
        ));
        let dqk = empty(&qk, vec![b, n, 2 * c]);
        let dv = empty(&v, vec![b, n, c]);
        let words = words(&d);
        launch_kernel(
            kernel(&shaders::SEMA_BACKWARD_Q, d.head_dim()),
            WORKGROUP as u32,
            count(&d),
            &[&rope, &qk, &v, &o, &stats, &dout, &dqk],
            &words,
        );
        launch_kernel(
            kernel(&shaders::SEMA_BACKWARD_KV, d.head_dim()),
            WORKGROUP as u32,
            count(&d),
            &[&rope, &qk, &v, &stats, &dout, &dqk, &dv],
            &words,
        );
        AttnGrads { dqk, dv }
    }
}

impl AttnOps for CubeBackend {
    fn window_attention(x: AttnTensors<Self>, config: AttnConfig) -> FloatTensor<Self> {
        Self::window_attention_forward(x, config).o
    }
}
