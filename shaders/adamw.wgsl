// AdamW (decoupled weight decay, bias-corrected moments) for one flattened parameter tensor, in
// one pass: reads p, g, m, v and writes the updated p, m, v to fresh buffers.
//   m' = b1 m + (1 - b1) g,   v' = b2 v + (1 - b2) g^2
//   p' = p (1 - lr wd) - (lr / bc1) m' / (sqrt(v' / bc2) + eps)
// The host computes the per-step scalars in double precision. Grid-stride loop.

@group(0) @binding(0) var<storage, read_write> params: array<u32>;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> p_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_out: array<f32>;

const P_LEN: u32 = 0u;
const P_DECAY: u32 = 1u;  // 1 - lr * wd
const P_STEP: u32 = 2u;   // lr / bc1
const P_BETA1: u32 = 3u;
const P_BETA2: u32 = 4u;
const P_INV_BC2: u32 = 5u;
const P_EPS: u32 = 6u;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = params[P_LEN];
    let decay = bitcast<f32>(params[P_DECAY]);
    let step = bitcast<f32>(params[P_STEP]);
    let b1 = bitcast<f32>(params[P_BETA1]);
    let b2 = bitcast<f32>(params[P_BETA2]);
    let inv_bc2 = bitcast<f32>(params[P_INV_BC2]);
    let eps = bitcast<f32>(params[P_EPS]);
    let stride = nwg.x * WORKGROUP;
    for (var i = gid.x; i < n; i += stride) {
        let gi = g[i];
        let mi = b1 * m[i] + (1.0 - b1) * gi;
        let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m_out[i] = mi;
        v_out[i] = vi;
        p_out[i] = p[i] * decay - step * mi / (sqrt(vi * inv_bc2) + eps);
    }
}
