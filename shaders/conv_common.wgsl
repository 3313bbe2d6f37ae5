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

// x[b, ci, oy * stride + ky - pad, ox * stride + kx - pad], zero outside the image; the tap
// t = ky * K + kx, the output pixel p = oy * out_width + ox.
fn tap(g: Geometry, b: u32, ci: u32, t: u32, p: u32) -> f32 {
    let oy = p / g.out_width;
    let ox = p - oy * g.out_width;
    let ky = t / g.k;
    let kx = t - ky * g.k;
    let iy = i32(oy * g.stride + ky) - i32(g.pad);
    let ix = i32(ox * g.stride + kx) - i32(g.pad);
    if (iy < 0 || ix < 0 || iy >= i32(g.height) || ix >= i32(g.width)) {
        return 0.0;
    }
    return x[((b * g.cin + ci) * g.height + u32(iy)) * g.width + u32(ix)];
}

// Row r = ci * K * K + t of the column matrix of image b at output pixel p (zero past the ends).
fn column(g: Geometry, b: u32, r: u32, p: u32) -> f32 {
    let taps = g.k * g.k;
    if (r >= g.cin * taps || p >= g.out_height * g.out_width) {
        return 0.0;
    }
    let ci = r / taps;
    return tap(g, b, ci, r - ci * taps, p);
}
