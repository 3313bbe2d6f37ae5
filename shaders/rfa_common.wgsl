// Shared by the RFAConv attention kernels: parameter words, index decomposition and the
// nine-way softmax of one (b, c, p) site, and the four bindings both kernels read.

@group(0) @binding(0) var<storage, read_write> params: array<u32>;
@group(0) @binding(1) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(2) var<storage, read_write> alpha: array<f32>;
@group(0) @binding(3) var<storage, read_write> feat: array<f32>;

const P_TOTAL: u32 = 0u;     // B * C * P
const P_CHANNELS: u32 = 1u;  // C
const P_PIXELS: u32 = 2u;    // P = H * W

const WORKGROUP: u32 = 256u;

struct Site {
    c: u32,
    // Index of (b, 9c, p) in a (B, 9C, P) array; tap k adds k * P.
    base: u32,
}

// Site i of the B * C * P sites (row-major over b, c, p).
fn site_of(i: u32) -> Site {
    let pixels = params[P_PIXELS];
    let p = i % pixels;
    let bc = i / pixels;
    return Site(bc % params[P_CHANNELS], bc * 9u * pixels + p);
}

// softmax_k(alpha[9c + k] * x), max-subtracted.
fn attention(x: f32, c: u32) -> array<f32, 9> {
    var a: array<f32, 9>;
    var m = -3.4e38;
    for (var k = 0u; k < 9u; k++) {
        a[k] = alpha[9u * c + k] * x;
        m = max(m, a[k]);
    }
    var s = 0.0;
    for (var k = 0u; k < 9u; k++) {
        a[k] = exp(a[k] - m);
        s += a[k];
    }
    let inv = 1.0 / s;
    for (var k = 0u; k < 9u; k++) {
        a[k] *= inv;
    }
    return a;
}
