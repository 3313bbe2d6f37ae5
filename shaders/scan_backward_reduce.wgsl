// @append scan_common.wgsl
// Selective scan, backward pass 1 of 3 (reduce): aggregates of the adjoint recurrence over one
// group of positions, walked from its last position to its first with a zero start:
//   lambda_t = g_t C_t[n] + mu_{t+1},   mu_t = a_t lambda_t,   a_t = exp(delta_t A[n])
//   agg[0..M)  = prod_t a_t,   agg[M..2M) = mu at the group's first position
// One invocation per (channel e, group g, batch*direction bk); layouts as in scan_reduce.wgsl,
// dy (B, K, L, E) at spatial positions.

@group(0) @binding(0) var<storage, read_write> delta: array<f32>;
@group(0) @binding(1) var<storage, read_write> bc: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef: array<f32>;
@group(0) @binding(3) var<storage, read_write> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: array<u32>;

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
    let n_groups = params[P_NGROUPS];
    let bk = wid.z;
    let k = bk % n_dirs;
    let g = wid.y;
    let span = params[P_CHUNK] * params[P_GROUP_CHUNKS];
    let p0 = g * span;
    let p1 = min(p0 + span, len);

    let d_base = bk * len * n_ch + e;
    let c_base = (params[P_BATCH] * n_dirs + bk) * len * n_st;
    let ch = k * n_ch + e;
    let coef_base = ch * (n_st + 2u);
    let bias = coef[coef_base + n_st + 1u];
    let m = params[P_BATCH] * n_dirs * n_groups * n_st * n_ch;
    let agg_base = (bk * n_groups + g) * n_st * n_ch + e;

    for (var n0 = 0u; n0 < n_st; n0 += STATE_BLOCK) {
        let nb = min(STATE_BLOCK, n_st - n0);
        var a2: array<f32, 16>;
        var mu: array<f32, 16>;
        for (var j = 0u; j < STATE_BLOCK; j++) {
            mu[j] = 0.0;
            a2[j] = 0.0;
            if (j < nb) {
                a2[j] = coef[coef_base + n0 + j] * LOG2E;
            }
        }
        var dsum = 0.0;
        for (var i = p0; i < p1; i++) {
            let pos = p1 - 1u - (i - p0);
            let s = spatial_index(mode, k, pos, len, height, width);
            let dt = softplus(delta[d_base + s * n_ch] + bias);
            let gy = dy[d_base + s * n_ch];
            dsum += dt;
            let row = c_base + s * n_st + n0;
            for (var j = 0u; j < STATE_BLOCK; j++) {
                if (j < nb) {
                    mu[j] = exp2(dt * a2[j]) * (gy * bc[row + j] + mu[j]);
                }
            }
        }
        for (var j = 0u; j < STATE_BLOCK; j++) {
            if (j < nb) {
                let idx = agg_base + (n0 + j) * n_ch;
                agg[idx] = exp2(dsum * a2[j]);
                agg[m + idx] = mu[j];
            }
        }
    }
}
