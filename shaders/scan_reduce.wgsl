// @append scan_common.wgsl
// Selective scan, forward pass 1 of 3 (reduce): the aggregate of the linear recurrence
// h_t = a_t h_{t-1} + b_t over one group of positions, started from h = 0.
// One invocation per (sequence channel e, group g, batch*direction bk); states in registers.
//   agg[0..M)   = prod_t a_t = exp2(log2(e) * A[n] * sum_t delta_t)
//   agg[M..2M)  = h at the end of the group (from a zero start)
// with M = B*K*NG*N*E, index ((bk*NG + g)*N + n)*E + e.
// Layouts: u (B, Ku, L, E); delta (B, K, L, E); bc (2, B*K, L, N) = [B | C];
// coef (K*E, N+2) = [A[0..N] | D | bias]. All positions are spatial indices (see spatial_index).

@group(0) @binding(0) var<storage, read_write> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: array<u32>;

const WORKGROUP: u32 = 64u;

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
    let b = bk / n_dirs;
    let k = bk % n_dirs;
    let g = wid.y;
    let span = params[P_CHUNK] * params[P_GROUP_CHUNKS];
    let p0 = g * span;
    let p1 = min(p0 + span, len);

    let u_dirs = params[P_U_DIRS];
    let ku = select(k, 0u, u_dirs == 1u);
    let u_base = (b * u_dirs + ku) * len * n_ch + e;
    let d_base = bk * len * n_ch + e;
    let b_base = bk * len * n_st;
    let ch = k * n_ch + e;
    let coef_base = ch * (n_st + 2u);
    let bias = coef[coef_base + n_st + 1u];
    let m = params[P_BATCH] * n_dirs * n_groups * n_st * n_ch;
    let agg_base = (bk * n_groups + g) * n_st * n_ch + e;

    for (var n0 = 0u; n0 < n_st; n0 += STATE_BLOCK) {
        let nb = min(STATE_BLOCK, n_st - n0);
        var a2: array<f32, 16>;
        var h: array<f32, 16>;
        for (var j = 0u; j < STATE_BLOCK; j++) {
            h[j] = 0.0;
            a2[j] = 0.0;
            if (j < nb) {
                a2[j] = coef[coef_base + n0 + j] * LOG2E;
            }
        }
        var dsum = 0.0;
        for (var pos = p0; pos < p1; pos++) {
            let s = spatial_index(mode, k, pos, len, height, width);
            let dt = softplus(delta[d_base + s * n_ch] + bias);
            let dtu = dt * u[u_base + s * n_ch];
            dsum += dt;
            let row = b_base + s * n_st + n0;
            for (var j = 0u; j < STATE_BLOCK; j++) {
                if (j < nb) {
                    h[j] = exp2(dt * a2[j]) * h[j] + dtu * bc[row + j];
                }
            }
        }
        for (var j = 0u; j < STATE_BLOCK; j++) {
            if (j < nb) {
                let idx = agg_base + (n0 + j) * n_ch;
                agg[idx] = exp2(dsum * a2[j]);
                agg[m + idx] = h[j];
            }
        }
    }
}
