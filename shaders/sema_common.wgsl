// Helpers shared by the SEMA window-attention kernels (sema_*.wgsl append this file).
//
// Layouts (f32, contiguous): qk (B, N, 2C) with q in channels [0, C) and k in [C, 2C); v and o
// (B, N, C); lse, delta (B, heads, N); N = H * W tokens in row-major map order. Head h owns
// channels [h*D, (h+1)*D). Windows are w_h x w_w tiles of the map, numbered row-major; windows
// on the bottom and right edges are cut by the map (their missing keys count as masked).
//
// 2-D RoPE (MLLA): channel pair p = (2p, 2p+1) of the full C channels is rotated by the angle
// row * theta_p for p < C/4 and col * theta_(p - C/4) otherwise. The host writes the table
// rope[(pos * kmax + kappa) * 2 + {0, 1}] = (cos, sin)(pos * theta_kappa), kmax = C/4, pos
// up to max(H, W) - 1, in double precision.

@group(0) @binding(0) var<storage, read_write> params: array<u32>;
// The RoPE table (below); binding 1 of every SEMA kernel.
@group(0) @binding(1) var<storage, read_write> rope: array<f32>;
@group(0) @binding(2) var<storage, read_write> qk: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

const P_BATCH: u32 = 0u;
const P_HEIGHT: u32 = 1u;
const P_WIDTH: u32 = 2u;
const P_CHANNELS: u32 = 3u;  // C
const P_HEADS: u32 = 4u;
const P_WIN_H: u32 = 5u;
const P_WIN_W: u32 = 6u;
const P_NWIN_X: u32 = 7u;    // windows per row of windows
const P_TILES: u32 = 8u;     // workgroups per window (WG tokens each)
const P_SCALE: u32 = 9u;     // f32 bits of 1/sqrt(D)
const P_ROPE: u32 = 10u;     // 1: rotate q and k
const P_KMAX: u32 = 11u;     // C / 4

// Head dimension; the host substitutes the configured value into this line.
const D: u32 = 32u;
const HALF: u32 = D / 2u;
// Invocations per workgroup, one token each.
const WG: u32 = 64u;
// Rows of a shared tile: two D-wide tiles of TILE rows fill 8 KiB of workgroup memory.
const TILE: u32 = 1024u / D;

struct Window {
    row0: u32,
    col0: u32,
    // extent of this (possibly cut) window
    eh: u32,
    ew: u32,
    count: u32,
}

fn window_of(index: u32) -> Window {
    let wh = params[P_WIN_H];
    let ww = params[P_WIN_W];
    let nwx = params[P_NWIN_X];
    var w: Window;
    w.row0 = (index / nwx) * wh;
    w.col0 = (index % nwx) * ww;
    w.eh = min(wh, params[P_HEIGHT] - w.row0);
    w.ew = min(ww, params[P_WIDTH] - w.col0);
    w.count = w.eh * w.ew;
    return w;
}

// Map row and column of the t-th token of a window.
fn token_rc(w: Window, t: u32) -> vec2<u32> {
    return vec2<u32>(w.row0 + t / w.ew, w.col0 + t % w.ew);
}

// (cos, sin) of the rotation of pair p of head h at map position rc (identity without RoPE).
fn rope_cs(h: u32, p: u32, rc: vec2<u32>) -> vec2<f32> {
    if (params[P_ROPE] == 0u) {
        return vec2<f32>(1.0, 0.0);
    }
    let kmax = params[P_KMAX];
    let gp = h * HALF + p;
    var i: u32;
    if (gp < kmax) {
        i = (rc.x * kmax + gp) * 2u;
    } else {
        i = (rc.y * kmax + gp - kmax) * 2u;
    }
    return vec2<f32>(rope[i], rope[i + 1u]);
}

// (x0 + i x1) e^{i phi}, or e^{-i phi} with `inverse`.
fn rotate(x: vec2<f32>, cs: vec2<f32>, inverse: bool) -> vec2<f32> {
    var s = cs.y;
    if (inverse) {
        s = -s;
    }
    return vec2<f32>(x.x * cs.x - x.y * s, x.x * s + x.y * cs.x);
}

// Head h's D channels of q or k starting at word `base` of qk, for the token at map position
// rc: RoPE-rotated and multiplied by `scale`.
fn load_rotated(base: u32, h: u32, rc: vec2<u32>, scale: f32) -> array<f32, D> {
    var x: array<f32, D>;
    for (var p = 0u; p < HALF; p++) {
        let r = rotate(vec2<f32>(qk[base + 2u * p], qk[base + 2u * p + 1u]), rope_cs(h, p, rc), false);
        x[2u * p] = r.x * scale;
        x[2u * p + 1u] = r.y * scale;
    }
    return x;
}

// Two tiles of TILE rows x D channels in workgroup memory (8 KiB together): keys and values in
// the forward and query kernels, queries and output gradients in the key kernel.
var<workgroup> tile_a: array<f32, 1024>;
var<workgroup> tile_b: array<f32, 1024>;
var<workgroup> wg_tile_count: u32;

// The number of TILE-row tiles of a window, as a workgroup-uniform value: the tile loops hold
// barriers, and WGSL's uniformity rules treat anything read from a storage buffer (the window
// geometry comes from params) as non-uniform. Call from uniform control flow.
fn uniform_tile_count(win: Window, lid: u32) -> u32 {
    if (lid == 0u) {
        wg_tile_count = (win.count + TILE - 1u) / TILE;
    }
    return workgroupUniformLoad(&wg_tile_count);
}

// Tokens first .. first + rows of window `win`, head h, batch b: RoPE-rotated keys into tile_a
// and values into tile_b, one channel pair per step of each invocation.
fn load_key_tile(b: u32, h: u32, win: Window, first: u32, rows: u32, lid: u32) {
    let c = params[P_CHANNELS];
    let n_tok = params[P_HEIGHT] * params[P_WIDTH];
    for (var idx = lid; idx < TILE * HALF; idx += WG) {
        let j = idx / HALF;
        let p = idx % HALF;
        if (j < rows) {
            let krc = token_rc(win, first + j);
            let kn = krc.x * params[P_WIDTH] + krc.y;
            let kb = (b * n_tok + kn) * 2u * c + c + h * D + 2u * p;
            let r = rotate(vec2<f32>(qk[kb], qk[kb + 1u]), rope_cs(h, p, krc), false);
            tile_a[j * D + 2u * p] = r.x;
            tile_a[j * D + 2u * p + 1u] = r.y;
            let vb = (b * n_tok + kn) * c + h * D + 2u * p;
            tile_b[j * D + 2u * p] = v[vb];
            tile_b[j * D + 2u * p + 1u] = v[vb + 1u];
        }
    }
}
