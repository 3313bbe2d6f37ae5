// @append scan_common.wgsl
// Selective scan, backward pass 1 of 3 (reduce): aggregates of the adjoint recurrence over one
// group of positions, walked from its last position to its first with a zero start:
//   lambda_t = g_t C_t[n] + mu_{t+1},   mu_t = a_t lambda_t,   a_t = exp(delta_t A[n])
//   agg[0..M)  = prod_t a_t,   agg[M..2M) = mu at the group's first position
// One invocation per (channel e, group g, batch*direction bk); layouts as in scan_reduce.wgsl,
// dy (B, K, L, E) at spatial positions.

@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;

// coef (K*E rows of A[0..N] | D | bias) follows B and C in the bc buffer, from word
// params[P_COEF] (a multiple of 4); `i` is a word index into that buffer.
fn coef(i: u32) -> f32 {
    return bc[i >> 2u][i & 3u];
}

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
        var m0 = vec4<f32>(0.0);
        var m1 = vec4<f32>(0.0);
        var m2 = vec4<f32>(0.0);
        var m3 = vec4<f32>(0.0);
        var dsum = 0.0;
        for (var i = it.p0; i < it.p1; i++) {
            let pos = it.p1 - 1u - (i - it.p0);
            let s = spatial_index(it.mode, it.k, pos, it.len, it.height, it.width);
            let dt = softplus(delta[it.d_base + s * it.n_ch] + bias);
            let gy = dy[it.d_base + s * it.n_ch];
            dsum += dt;
            let r = (it.c_base + s * it.n_pad + n0) / 4u;
            m0 = exp2(dt * a0) * (gy * bc[r] + m0);
            m1 = exp2(dt * a1) * (gy * bc[r + 1u] + m1);
            m2 = exp2(dt * a2) * (gy * bc[r + 2u] + m2);
            m3 = exp2(dt * a3) * (gy * bc[r + 3u] + m3);
        }
        let base = it.agg_base + n0 * it.n_ch;
        store4(base, it.n_ch, exp2(dsum * a0));
        store4(base + 4u * it.n_ch, it.n_ch, exp2(dsum * a1));
        store4(base + 8u * it.n_ch, it.n_ch, exp2(dsum * a2));
        store4(base + 12u * it.n_ch, it.n_ch, exp2(dsum * a3));
        store4(it.agg_m + base, it.n_ch, m0);
        store4(it.agg_m + base + 4u * it.n_ch, it.n_ch, m1);
        store4(it.agg_m + base + 8u * it.n_ch, it.n_ch, m2);
        store4(it.agg_m + base + 12u * it.n_ch, it.n_ch, m3);
    }
}
