// Weight gradient of a depthwise 2-D convolution (groups = Cin, Cout = multiplier * Cin, K <= 3),
// split over the (image, pixel) pairs:
//   partial[s, co, t] = sum over pairs (b, p) of split s of dy[b, co, p] * x[b, co / mult, p @ t],
// x[b, c, p @ t] being the input under tap t = ky * K + kx of output pixel p (zero outside); the
// caller sums the splits (the weight gradient is partial summed over s, as (Cout, 1, K, K)).
// Layouts: x (B, Cin, H, W), dy (B, Cout, Ho, Wo), partial (S, Cout, K * K). One workgroup per
// (split, output channel); each invocation sums every 256th pair of the split, then the
// workgroup adds its invocations' sums tap by tap.
// Dispatch: x = split, y = output channel.

// Bindings 0-1 (params, x) are declared in conv_common.wgsl.
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

// @append conv_common.wgsl

const WG: u32 = 256u;
const MAX_TAPS: u32 = 9u;

var<workgroup> sums: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = geometry();
    let co = wid.y;
    let ci = co / params[P_MULTIPLIER];
    let taps = g.k * g.k;
    let pixels = g.out_height * g.out_width;
    let pairs = g.batch * pixels;
    let first = wid.x * params[P_CHUNK];
    let last = min(first + params[P_CHUNK], pairs);

    var acc: array<f32, 9>;
    for (var t = 0u; t < MAX_TAPS; t++) {
        acc[t] = 0.0;
    }
    // The pair moves by WG per pass, kept as its parts (no division in the loop).
    let advance = pair_of(g, WG);
    var at = pair_of(g, first + lid);
    for (var pair = first + lid; pair < last; pair += WG) {
        let d = dy[(at.b * g.cout + co) * pixels + at.oy * g.out_width + at.ox];
        for (var ky = 0u; ky < g.k; ky++) {
            for (var kx = 0u; kx < g.k; kx++) {
                acc[ky * g.k + kx] += d * column(g, at.b, Row(ci, ky, kx), at.oy, at.ox);
            }
        }
        at = pair_add(g, at, advance);
    }
    for (var t = 0u; t < MAX_TAPS; t++) {
        sums[lid] = acc[t];
        for (var half = WG / 2u; half > 0u; half /= 2u) {
            workgroupBarrier();
            if (lid < half) {
                sums[lid] += sums[lid + half];
            }
        }
        workgroupBarrier();
        if (lid == 0u && t < taps) {
            partial[(wid.x * g.cout + co) * taps + t] = sums[0];
        }
        workgroupBarrier();
    }
}
