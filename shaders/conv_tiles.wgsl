// Shared by the two GEMM convolution kernels (conv_gemm.wgsl, conv_wgrad.wgsl): the tile sizes,
// the two workgroup tiles of one reduction step, and the 4 x 4 multiply-add of one invocation.
// Each workgroup computes TM (output channels) x TN (columns) results; invocation (tx, ty) =
// (lid % 16, lid / 16) holds channels 4 ty .. 4 ty + 3 of columns tx, tx + 16, tx + 32, tx + 48.

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;   // reduction steps per tile
const WG: u32 = 256u;

var<workgroup> tile_a: array<f32, 1024>;  // [k][m], TK x TM: the channel side
var<workgroup> tile_b: array<f32, 1024>;  // [k][n], TK x TN: the column side
var<workgroup> wg_steps: u32;

// ceil(n / TK) as a workgroup-uniform value (n comes from params, which WGSL's uniformity rules
// treat as non-uniform; the step loop holds barriers). Call from uniform control flow.
fn uniform_steps(n: u32, lid: u32) -> u32 {
    if (lid == 0u) {
        wg_steps = (n + TK - 1u) / TK;
    }
    return workgroupUniformLoad(&wg_steps);
}

// acc[j][i] += sum over the step's k of tile_a[k][4 ty + i] * tile_b[k][tx + 16 j].
fn multiply_tiles(acc: ptr<function, array<vec4<f32>, 4>>, tx: u32, ty: u32) {
    for (var k = 0u; k < TK; k++) {
        let a = vec4<f32>(
            tile_a[k * TM + 4u * ty],
            tile_a[k * TM + 4u * ty + 1u],
            tile_a[k * TM + 4u * ty + 2u],
            tile_a[k * TM + 4u * ty + 3u],
        );
        for (var j = 0u; j < 4u; j++) {
            (*acc)[j] += a * tile_b[k * TN + tx + 16u * j];
        }
    }
}
