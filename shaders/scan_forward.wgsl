// @append scan_common.wgsl
// Selective scan, forward pass 3 of 3 (apply): walks one group of positions from the state
// that enters it (pass 2's carry, or zero when the sequence is one group), and writes
//   y_t = sum_n C_t[n] h_t[n] + D u_t
// plus the state entering every checkpoint chunk, which the backward pass restarts from.
// One invocation per (channel e, group g, batch*direction bk); states in registers.
// Layouts as in scan_reduce.wgsl; y (B, K, L, E) at spatial positions;
// ckpt ((bk*NCH + chunk)*N + n)*E + e.

@group(0) @binding(0) var<storage, read_write> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> ckpt: array<f32>;
@group(0) @binding(7) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n_ch = params[P_CHANNELS];
    let e = gid.x;
    if (e >= n_ch) {
        return;
    }
    let n_dirs = params[P_DIRS];
    let len = params[P_LEN];
    let n_st = params[P_STATES];
    let mode = params[P_MODE];
    let height = params[P_HEIGHT];
    let width = params[P_WIDTH];
    let chunk = params[P_CHUNK];
    let n_chunks = params[P_NCHUNKS];
    let n_groups = params[P_NGROUPS];
    let bk = wid.z;
    let b = bk / n_dirs;
    let k = bk % n_dirs;
    let g = wid.y;
    let span = chunk * params[P_GROUP_CHUNKS];
    let p0 = g * span;
    let p1 = min(p0 + span, len);

    let u_dirs = params[P_U_DIRS];
    let ku = select(k, 0u, u_dirs == 1u);
    let u_base = (b * u_dirs + ku) * len * n_ch + e;
    let d_base = bk * len * n_ch + e;
    let b_base = bk * len * n_st;
    let c_base = (params[P_BATCH] * n_dirs + bk) * len * n_st;
    let ch = k * n_ch + e;
    let coef_base = ch * (n_st + 2u);
    let skip = coef[coef_base + n_st];
    let bias = coef[coef_base + n_st + 1u];
    let m = params[P_BATCH] * n_dirs * n_groups * n_st * n_ch;
    let carry_base = m + (bk * n_groups + g) * n_st * n_ch + e;
    let ckpt_base = bk * n_chunks * n_st * n_ch + e;

    for (var n0 = 0u; n0 < n_st; n0 += STATE_BLOCK) {
        let nb = min(STATE_BLOCK, n_st - n0);
        var a2: array<f32, 16>;
        var h: array<f32, 16>;
        for (var j = 0u; j < STATE_BLOCK; j++) {
            h[j] = 0.0;
            a2[j] = 0.0;
            if (j < nb) {
                a2[j] = coef[coef_base + n0 + j] * LOG2E;
                if (n_groups > 1u) {
                    h[j] = agg[carry_base + (n0 + j) * n_ch];
                }
            }
        }
        for (var pos = p0; pos < p1; pos++) {
            if (pos % chunk == 0u) {
                let cb = ckpt_base + ((pos / chunk) * n_st + n0) * n_ch;
                for (var j = 0u; j < STATE_BLOCK; j++) {
                    if (j < nb) {
                        ckpt[cb + j * n_ch] = h[j];
                    }
                }
            }
            let s = spatial_index(mode, k, pos, len, height, width);
            let uv = u[u_base + s * n_ch];
            let dt = softplus(delta[d_base + s * n_ch] + bias);
            let dtu = dt * uv;
            let row_b = b_base + s * n_st + n0;
            let row_c = c_base + s * n_st + n0;
            var acc = 0.0;
            for (var j = 0u; j < STATE_BLOCK; j++) {
                if (j < nb) {
                    h[j] = exp2(dt * a2[j]) * h[j] + dtu * bc[row_b + j];
                    acc += bc[row_c + j] * h[j];
                }
            }
            let yi = d_base + s * n_ch;
            if (n0 == 0u) {
                y[yi] = acc + skip * uv;
            } else {
                y[yi] += acc;
            }
        }
    }
}
