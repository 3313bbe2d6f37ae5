// @append scan_common.wgsl
// Selective scan, forward pass 3 of 3 (apply): walks one group of positions from the state
// that enters it (pass 2's carry, or zero when the sequence is one group), and writes
//   y_t = sum_n C_t[n] h_t[n] + D u_t
// plus the state entering every checkpoint chunk, which the backward pass restarts from.
// One invocation per (channel e, group g, batch*direction bk); 16 states in four vec4
// registers per block of states. Layouts as in scan_reduce.wgsl; y (B, K, L, E) at spatial
// positions; ckpt ((bk*NCH + chunk)*NP + n)*E + e.

@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read_write> bc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> agg: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> ckpt: array<f32>;

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

fn carry4(base: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(agg[base], agg[base + stride], agg[base + 2u * stride], agg[base + 3u * stride]);
}

fn save4(base: u32, stride: u32, v: vec4<f32>) {
    ckpt[base] = v.x;
    ckpt[base + stride] = v.y;
    ckpt[base + 2u * stride] = v.z;
    ckpt[base + 3u * stride] = v.w;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let it = channel_item(gid.x, wid);
    if (it.e >= it.n_ch) {
        return;
    }
    let chunk = params[P_CHUNK];
    let n_ch = it.n_ch;
    let skip = coef(it.coef_base + it.n_st);
    let bias = coef(it.coef_base + it.n_st + 1u);
    let ckpt_base = it.bk * params[P_NCHUNKS] * it.n_pad * n_ch + it.e;

    for (var n0 = 0u; n0 < it.n_pad; n0 += STATE_BLOCK) {
        let a0 = a4(it.coef_base, n0, it.n_st);
        let a1 = a4(it.coef_base, n0 + 4u, it.n_st);
        let a2 = a4(it.coef_base, n0 + 8u, it.n_st);
        let a3 = a4(it.coef_base, n0 + 12u, it.n_st);
        var h0 = vec4<f32>(0.0);
        var h1 = vec4<f32>(0.0);
        var h2 = vec4<f32>(0.0);
        var h3 = vec4<f32>(0.0);
        if (it.n_groups > 1u) {
            let cb = it.agg_m + it.agg_base + n0 * n_ch;
            h0 = carry4(cb, n_ch);
            h1 = carry4(cb + 4u * n_ch, n_ch);
            h2 = carry4(cb + 8u * n_ch, n_ch);
            h3 = carry4(cb + 12u * n_ch, n_ch);
        }
        // The next position's loads are issued one step ahead to hide memory latency.
        var s_nx = spatial_index(it.mode, it.k, it.p0, it.len, it.height, it.width);
        var raw_nx = delta[it.d_base + s_nx * n_ch];
        var u_nx = u[it.u_base + s_nx * n_ch];
        for (var pos = it.p0; pos < it.p1; pos++) {
            if (pos % chunk == 0u) {
                let cb = ckpt_base + ((pos / chunk) * it.n_pad + n0) * n_ch;
                save4(cb, n_ch, h0);
                save4(cb + 4u * n_ch, n_ch, h1);
                save4(cb + 8u * n_ch, n_ch, h2);
                save4(cb + 12u * n_ch, n_ch, h3);
            }
            let s = s_nx;
            let uv = u_nx;
            let dt = softplus(raw_nx + bias);
            let rb = (it.b_base + s * it.n_pad + n0) / 4u;
            let rc = (it.c_base + s * it.n_pad + n0) / 4u;
            let b0 = bc[rb];
            let b1 = bc[rb + 1u];
            let b2 = bc[rb + 2u];
            let b3 = bc[rb + 3u];
            let c0 = bc[rc];
            let c1 = bc[rc + 1u];
            let c2 = bc[rc + 2u];
            let c3 = bc[rc + 3u];
            if (pos + 1u < it.p1) {
                s_nx = spatial_index(it.mode, it.k, pos + 1u, it.len, it.height, it.width);
                raw_nx = delta[it.d_base + s_nx * n_ch];
                u_nx = u[it.u_base + s_nx * n_ch];
            }
            let dtu = dt * uv;
            h0 = exp2(dt * a0) * h0 + dtu * b0;
            h1 = exp2(dt * a1) * h1 + dtu * b1;
            h2 = exp2(dt * a2) * h2 + dtu * b2;
            h3 = exp2(dt * a3) * h3 + dtu * b3;
            let acc = dot(c0, h0) + dot(c1, h1) + dot(c2, h2) + dot(c3, h3);
            let yi = it.d_base + s * n_ch;
            if (n0 == 0u) {
                y[yi] = acc + skip * uv;
            } else {
                y[yi] += acc;
            }
        }
    }
}
