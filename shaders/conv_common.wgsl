// Shared by the convolution kernels: the parameter words, the input binding and the implicit
// im2col read of the input (the column matrix is never stored).

@group(0) @binding(0) var<storage, read_write> params: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const P_BATCH: u32 = 0u;
const P_CIN: u32 = 1u;
const P_HEIGHT: u32 = 2u;
const P_WIDTH: u32 = 3u;
const P_COUT: u32 = 4u;
const P_OUT_HEIGHT: u32 = 5u;
const P_OUT_WIDTH: u32 = 6u;
const P_KERNEL: u32 = 7u;     // K: square K x K filters
const P_STRIDE: u32 = 8u;
const P_PAD: u32 = 9u;
const P_CHUNK: u32 = 10u;     // gradient kernels: (b, p) pairs summed by one workgroup
const P_MULTIPLIER: u32 = 11u; // depthwise: output channels per input channel

struct Geometry {
    batch: u32,
    cin: u32,
    height: u32,
    width: u32,
    cout: u32,
    out_height: u32,
    out_width: u32,
    k: u32,
    stride: u32,
    pad: u32,
}

fn geometry() -> Geometry {
    return Geometry(
        params[P_BATCH], params[P_CIN], params[P_HEIGHT], params[P_WIDTH], params[P_COUT],
        params[P_OUT_HEIGHT], params[P_OUT_WIDTH], params[P_KERNEL], params[P_STRIDE],
        params[P_PAD],
    );
}

// A row r = ci * K * K + ky * K + kx of the column matrix, kept as its parts: stepping through
// rows (row_add) then needs no division in the kernels' loops.
struct Row {
    ci: u32,
    ky: u32,
    kx: u32,
}

fn row_of(g: Geometry, r: u32) -> Row {
    let taps = g.k * g.k;
    let ci = r / taps;
    let t = r - ci * taps;
    let ky = t / g.k;
    return Row(ci, ky, t - ky * g.k);
}

// The row a + d (d from row_of; every part of a and d is below its modulus).
fn row_add(g: Geometry, a: Row, d: Row) -> Row {
    var r = Row(a.ci + d.ci, a.ky + d.ky, a.kx + d.kx);
    if (r.kx >= g.k) {
        r.kx -= g.k;
        r.ky += 1u;
    }
    if (r.ky >= g.k) {
        r.ky -= g.k;
        r.ci += 1u;
    }
    return r;
}

// An (image, output pixel) pair q = (b * Ho + oy) * Wo + ox, kept as its parts like Row.
struct Pair {
    b: u32,
    oy: u32,
    ox: u32,
}

fn pair_of(g: Geometry, q: u32) -> Pair {
    let pixels = g.out_height * g.out_width;
    let b = q / pixels;
    let p = q - b * pixels;
    let oy = p / g.out_width;
    return Pair(b, oy, p - oy * g.out_width);
}

fn pair_add(g: Geometry, a: Pair, d: Pair) -> Pair {
    var q = Pair(a.b + d.b, a.oy + d.oy, a.ox + d.ox);
    if (q.ox >= g.out_width) {
        q.ox -= g.out_width;
        q.oy += 1u;
    }
    if (q.oy >= g.out_height) {
        q.oy -= g.out_height;
        q.b += 1u;
    }
    return q;
}

// x[b, ci, oy * stride + ky - pad, ox * stride + kx - pad], zero outside the image: row `row`
// of image b's column matrix at output pixel (oy, ox). The caller keeps ci below Cin.
fn column(g: Geometry, b: u32, row: Row, oy: u32, ox: u32) -> f32 {
    let iy = i32(oy * g.stride + row.ky) - i32(g.pad);
    let ix = i32(ox * g.stride + row.kx) - i32(g.pad);
    if (iy < 0 || ix < 0 || iy >= i32(g.height) || ix >= i32(g.width)) {
        return 0.0;
    }
    return x[((b * g.cin + row.ci) * g.height + u32(iy)) * g.width + u32(ix)];
}
