// Weight gradient of a dense 2-D convolution, split over the (image, pixel) pairs:
//   partial[s, co, r] = sum over pairs (b, p) of split s of dy[b, co, p] * column[b, r, p],
// with the column matrix of conv_common.wgsl; the caller sums the splits (the weight gradient
// is partial summed over s, as (Cout, Cin, K, K)). Layouts: x (B, Cin, H, W), dy (B, Cout, Ho,
// Wo), partial (S, Cout, Cin * K * K). Split s holds the pairs [s * chunk, (s + 1) * chunk) of
// the B * Ho * Wo pairs in (b, p) order. One workgroup computes 64 channels x 64 rows of one
// split, 4 x 4 per invocation, 16 pairs at a time through workgroup memory.
// Dispatch: x = split, y = channel tile, z = row tile.

// Bindings 0-1 (params, x) are declared in conv_common.wgsl.
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

// @append conv_common.wgsl
// @append conv_tiles.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = geometry();
    let co0 = wid.y * TM;
    let r0 = wid.z * TN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let rows = g.cin * g.k * g.k;
    let pixels = g.out_height * g.out_width;
    let pairs = g.batch * pixels;
    let first = wid.x * params[P_CHUNK];
    let last = min(first + params[P_CHUNK], pairs);
    let steps = uniform_steps(last - first, lid);

    // Loads: this invocation brings dy (channel co0 + lid / 16 + 16 q) and column entries (row
    // r0 + lid / 16 + 16 q) at pair first + s TK + lid % 16 for q = 0..3. Its channels and rows
    // stay the same in every step and its pair moves by TK: each is split into its parts once.
    let k = lid % TK;
    var row: array<Row, 4>;
    for (var q = 0u; q < 4u; q++) {
        row[q] = row_of(g, r0 + lid / TK + 16u * q);
    }
    let advance = pair_of(g, TK);
    var at = pair_of(g, first + k);

    var acc: array<vec4<f32>, 4>;  // acc[j][i]: channel co0 + 4 ty + i, row r0 + tx + 16 j
    for (var j = 0u; j < 4u; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    for (var s = 0u; s < steps; s++) {
        let pair_ok = first + s * TK + k < last;
        let p = at.oy * g.out_width + at.ox;
        for (var q = 0u; q < 4u; q++) {
            let m = lid / TK + 16u * q;
            var d = 0.0;
            var c = 0.0;
            if (pair_ok) {
                if (co0 + m < g.cout) {
                    d = dy[(at.b * g.cout + co0 + m) * pixels + p];
                }
                if (row[q].ci < g.cin) {
                    c = column(g, at.b, row[q], at.oy, at.ox);
                }
            }
            tile_a[k * TM + m] = d;
            tile_b[k * TN + m] = c;
        }
        at = pair_add(g, at, advance);
        workgroupBarrier();
        multiply_tiles(&acc, tx, ty);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let co = co0 + 4u * ty + i;
        if (co < g.cout) {
            for (var j = 0u; j < 4u; j++) {
                let r = r0 + tx + 16u * j;
                if (r < rows) {
                    partial[(wid.x * g.cout + co) * rows + r] = acc[j][i];
                }
            }
        }
    }
}
