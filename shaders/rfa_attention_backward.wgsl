// RFAConv's receptive-field attention, backward (forward in rfa_attention.wgsl). With
// a_k = softmax_k(alpha[9c + k] * x), x = pooled[b, c, p], f_k = feat[b, 9c + k, p] and the
// upstream gradient g_k = dout[b, 9c + k, p]:
//   dfeat_k = a_k g_k
//   dl_k    = a_k (g_k f_k - sum_j a_j g_j f_j)        (gradient of the logit alpha_k x)
//   dpooled = sum_k dl_k alpha[9c + k]
//   dterm_k = dl_k x                                   (summed over b and p by the host: dalpha)
// The probabilities are recomputed from x, not stored. One invocation per (b, c, p).

// Bindings 0-3 (params, pooled, alpha, feat) are declared in rfa_common.wgsl.
@group(0) @binding(4) var<storage, read_write> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dpooled: array<f32>;
@group(0) @binding(6) var<storage, read_write> dfeat: array<f32>;
@group(0) @binding(7) var<storage, read_write> dterm: array<f32>;

// @append rfa_common.wgsl

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params[P_TOTAL];
    let pixels = params[P_PIXELS];
    for (var i = gid.x; i < total; i += nwg.x * WORKGROUP) {
        let site = site_of(i);
        let x = pooled[i];
        let att = attention(x, site.c);
        var t: array<f32, 9>;
        var s = 0.0;
        for (var k = 0u; k < 9u; k++) {
            let j = site.base + k * pixels;
            let g = dout[j];
            dfeat[j] = att[k] * g;
            t[k] = g * feat[j];
            s += att[k] * t[k];
        }
        var dx = 0.0;
        for (var k = 0u; k < 9u; k++) {
            let dl = att[k] * (t[k] - s);
            dx += dl * alpha[9u * site.c + k];
            dterm[site.base + k * pixels] = dl * x;
        }
        dpooled[i] = dx;
    }
}
