// Dense 2-D convolution (groups = 1) as an implicit GEMM, per image b:
//   out[b, co, p] = bias[co] + sum_r w[co, r] * column[b, r, p],
// r = ci * K * K + ky * K + kx over the reduction, p = oy * out_width + ox over the output pixels,
// column[b, r, p] = x[b, ci, oy * stride + ky - pad, ox * stride + kx - pad] (zero outside).
// Layouts: x (B, Cin, H, W), w (Cout, Cin, K, K), bias (Cout), out (B, Cout, Ho, Wo).
// The input gradient of a stride-1 convolution is this kernel too: the output gradient
// convolved with the weights transposed over (Cout, Cin) and flipped in space, padding K-1-pad.
// One workgroup computes 64 output channels x 64 pixels of one image, 4 x 4 per invocation
// (4 channels x 4 pixels 16 apart, so neighbouring invocations store neighbouring pixels); the
// weights and the column matrix pass through workgroup memory 16 reduction rows at a time.
// Dispatch: x = pixel tile, y = channel tile, z = image.

// Bindings 0-1 (params, x) are declared in conv_common.wgsl.
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// @append conv_common.wgsl
// @append conv_tiles.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = geometry();
    let b = wid.z;
    let co0 = wid.y * TM;
    let p0 = wid.x * TN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let rows = g.cin * g.k * g.k;
    let pixels = g.out_height * g.out_width;
    let steps = uniform_steps(rows, lid);

    // Loads: this invocation brings weights (channel co0 + lid / 16 + 16 q, row lid % 16) and
    // column entries (row lid / 64 + 4 q, pixel p0 + lid % 64) for q = 0..3 into each step's
    // tiles. Its pixel stays the same in every step and its rows move by TK: both are split
    // into their parts once, so the loop does no division.
    let n = lid % TN;
    let p = p0 + n;
    let p_ok = p < pixels;
    let oy = p / g.out_width;
    let ox = p - oy * g.out_width;
    let advance = row_of(g, TK);
    var row: array<Row, 4>;
    for (var q = 0u; q < 4u; q++) {
        row[q] = row_of(g, lid / TN + 4u * q);
    }
    let kw = lid % TK;

    var acc: array<vec4<f32>, 4>;  // acc[j][i]: channel co0 + 4 ty + i, pixel p0 + tx + 16 j
    for (var j = 0u; j < 4u; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    for (var s = 0u; s < steps; s++) {
        let r0 = s * TK;
        for (var q = 0u; q < 4u; q++) {
            let m = lid / TK + 16u * q;
            var v = 0.0;
            if (co0 + m < g.cout && r0 + kw < rows) {
                v = w[(co0 + m) * rows + r0 + kw];
            }
            tile_a[kw * TM + m] = v;
            var c = 0.0;
            if (p_ok && row[q].ci < g.cin) {
                c = column(g, b, row[q], oy, ox);
            }
            tile_b[(lid / TN + 4u * q) * TN + n] = c;
            row[q] = row_add(g, row[q], advance);
        }
        workgroupBarrier();
        multiply_tiles(&acc, tx, ty);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let co = co0 + 4u * ty + i;
        if (co < g.cout) {
            for (var j = 0u; j < 4u; j++) {
                let pj = p0 + tx + 16u * j;
                if (pj < pixels) {
                    out[(b * g.cout + co) * pixels + pj] = acc[j][i] + bias[co];
                }
            }
        }
    }
}
