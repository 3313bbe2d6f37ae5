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

@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read_write> bc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;

// coef (K*E rows of A[0..N] | D | bias) follows B and C in the bc buffer, from word
// params[P_COEF] (a multiple of 4); `i` is a word index into that buffer.
fn coef(i: u32) -> f32 {
    return bc[i >> 2u][i & 3u];
}

// A[n0 + 4q .. n0 + 4q + 4) * log2(e), zero for padded states.
fn a4(base: u32, n: u32, n_st: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (n + j < n_st) {
            v[j] = coef(base + n + j) * LOG2E;
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
    let it = channel_item(gid.x, wid);
    if (it.e >= it.n_ch) {
        return;
    }
    let bias = coef(it.coef_base + it.n_st + 1u);
    for (var n0 = 0u; n0 < it.n_pad; n0 += STATE_BLOCK) {
        let a0 = a4(it.coef_base, n0, it.n_st);
        let a1 = a4(it.coef_base, n0 + 4u, it.n_st);
        let a2 = a4(it.coef_base, n0 + 8u, it.n_st);
        let a3 = a4(it.coef_base, n0 + 12u, it.n_st);
        var h0 = vec4<f32>(0.0);
        var h1 = vec4<f32>(0.0);
        var h2 = vec4<f32>(0.0);
        var h3 = vec4<f32>(0.0);
        var dsum = 0.0;
        var s_nx = spatial_index(it.mode, it.k, it.p0, it.len, it.height, it.width);
        var raw_nx = delta[it.d_base + s_nx * it.n_ch];
        var u_nx = u[it.u_base + s_nx * it.n_ch];
        for (var pos = it.p0; pos < it.p1; pos++) {
            let s = s_nx;
            let dt = softplus(raw_nx + bias);
            let dtu = dt * u_nx;
            let r = (it.b_base + s * it.n_pad + n0) / 4u;
            let b0 = bc[r];
            let b1 = bc[r + 1u];
            let b2 = bc[r + 2u];
            let b3 = bc[r + 3u];
            if (pos + 1u < it.p1) {
                s_nx = spatial_index(it.mode, it.k, pos + 1u, it.len, it.height, it.width);
                raw_nx = delta[it.d_base + s_nx * it.n_ch];
                u_nx = u[it.u_base + s_nx * it.n_ch];
            }
            dsum += dt;
            h0 = exp2(dt * a0) * h0 + dtu * b0;
            h1 = exp2(dt * a1) * h1 + dtu * b1;
            h2 = exp2(dt * a2) * h2 + dtu * b2;
            h3 = exp2(dt * a3) * h3 + dtu * b3;
        }
        let base = it.agg_base + n0 * it.n_ch;
        store4(base, it.n_ch, exp2(dsum * a0));
        store4(base + 4u * it.n_ch, it.n_ch, exp2(dsum * a1));
        store4(base + 8u * it.n_ch, it.n_ch, exp2(dsum * a2));
        store4(base + 12u * it.n_ch, it.n_ch, exp2(dsum * a3));
        store4(it.agg_m + base, it.n_ch, h0);
        store4(it.agg_m + base + 4u * it.n_ch, it.n_ch, h1);
        store4(it.agg_m + base + 8u * it.n_ch, it.n_ch, h2);
        store4(it.agg_m + base + 12u * it.n_ch, it.n_ch, h3);
    }
}
