// RFAConv's receptive-field attention, forward (MODEL-SPEC §A.4.8): for every batch item b,
// channel c and pixel p, the nine attention logits alpha[9c + k] * pooled[b, c, p] (the grouped
// 1x1 convolution of the 3x3 average-pooled input) go through a softmax over k, and the nine
// receptive-field features feat[b, 9c + k, p] are weighted by it:
//   out[b, 9c + k, p] = feat[b, 9c + k, p] * softmax_k(alpha[9c + k] * pooled[b, c, p]).
// Layouts: pooled (B, C, P), alpha (9C), feat and out (B, 9C, P), P = H * W. One invocation
// per (b, c, p), grid-stride loop.

// Bindings 0-3 (params, pooled, alpha, feat) are declared in rfa_common.wgsl.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// @append rfa_common.wgsl

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = params[P_TOTAL];
    let pixels = params[P_PIXELS];
    for (var i = gid.x; i < total; i += nwg.x * WORKGROUP) {
        let site = site_of(i);
        let att = attention(pooled[i], site.c);
        for (var k = 0u; k < 9u; k++) {
            let j = site.base + k * pixels;
            out[j] = feat[j] * att[k];
        }
    }
}
