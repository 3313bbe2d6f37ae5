// @append scan_common.wgsl
// Selective scan, forward pass 1 of 3 (reduce): the aggregate of the linear recurrence
// h_t = a_t h_{t-1} + b_t over one group of positions, started from h = 0.
// One invocation per (sequence channel e, group g, batch*direction bk); 16 states in four
// vec4 registers per block of states.
//   agg[0..M)   = prod_t a_t = exp2(log2(e) * A[n] * sum_t delta_t)
//   agg[M..2M)  = h at the end of the group (from a zero start)
// with M = B*K*NG*NP*E (NP = states padded to 16), index ((bk*NG + g)*NP + n)*E + e.
// Layouts: u (B, Ku, L, E); delta (B, K, L, E); bc (2, B*K, L, NP) = [B | C], zero padded;
// coef (K*E, N+2) = [A[0..N] | D | bias]. All positions are spatial indices (spatial_index).

@group(0) @binding(0) var<storage, read_write> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;
@group(0) @binding(5) var<storage, read_write> params: array<u32>;

// A[n0 + 4q .. n0 + 4q + 4) * log2(e), zero for padded states.
fn a4(base: u32, n: u32, n_st: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (n + j < n_st) {
            v[j] = coef[base + n + j] * LOG2E;
        }
    }
    return v;
}

fn store4(base: u32, stride: u32, v: vec4<f32>) {
    agg[base] = v.x;
    agg[base + stride] = v.y;
    agg[base + 2u * stride] = v.z;
    agg[base + 3u * stride] = v.w;
}

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
    let n_pad = params[P_STATES_PAD];
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
    let b_base = bk * len * n_pad;
    let coef_base = (k * n_ch + e) * (n_st + 2u);
    let bias = coef[coef_base + n_st + 1u];
    let m = params[P_BATCH] * n_dirs * n_groups * n_pad * n_ch;
    let agg_base = (bk * n_groups + g) * n_pad * n_ch + e;

    for (var n0 = 0u; n0 < n_pad; n0 += STATE_BLOCK) {
        let a0 = a4(coef_base, n0, n_st);
        let a1 = a4(coef_base, n0 + 4u, n_st);
        let a2 = a4(coef_base, n0 + 8u, n_st);
        let a3 = a4(coef_base, n0 + 12u, n_st);
        var h0 = vec4<f32>(0.0);
        var h1 = vec4<f32>(0.0);
        var h2 = vec4<f32>(0.0);
        var h3 = vec4<f32>(0.0);
        var dsum = 0.0;
        var s_nx = spatial_index(mode, k, p0, len, height, width);
        var raw_nx = delta[d_base + s_nx * n_ch];
        var u_nx = u[u_base + s_nx * n_ch];
        for (var pos = p0; pos < p1; pos++) {
            let s = s_nx;
            let dt = softplus(raw_nx + bias);
            let dtu = dt * u_nx;
            let r = (b_base + s * n_pad + n0) / 4u;
            let b0 = bc[r];
            let b1 = bc[r + 1u];
            let b2 = bc[r + 2u];
            let b3 = bc[r + 3u];
            if (pos + 1u < p1) {
                s_nx = spatial_index(mode, k, pos + 1u, len, height, width);
                raw_nx = delta[d_base + s_nx * n_ch];
                u_nx = u[u_base + s_nx * n_ch];
            }
            dsum += dt;
            h0 = exp2(dt * a0) * h0 + dtu * b0;
            h1 = exp2(dt * a1) * h1 + dtu * b1;
            h2 = exp2(dt * a2) * h2 + dtu * b2;
            h3 = exp2(dt * a3) * h3 + dtu * b3;
        }
        let base = agg_base + n0 * n_ch;
        store4(base, n_ch, exp2(dsum * a0));
        store4(base + 4u * n_ch, n_ch, exp2(dsum * a1));
        store4(base + 8u * n_ch, n_ch, exp2(dsum * a2));
        store4(base + 12u * n_ch, n_ch, exp2(dsum * a3));
        store4(m + base, n_ch, h0);
        store4(m + base + 4u * n_ch, n_ch, h1);
        store4(m + base + 8u * n_ch, n_ch, h2);
        store4(m + base + 12u * n_ch, n_ch, h3);
    }
}
