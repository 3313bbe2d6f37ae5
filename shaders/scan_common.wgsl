// Helpers shared by the selective-scan kernels. The loader appends this file to every
// `scan_*.wgsl` kernel (module-scope declarations in WGSL are order independent), so line
// numbers inside a kernel file stay the file's own.

// Parameter block of every scan kernel, always binding 0; the word offsets below. The host
// writes it in model/src/ops/scan/geometry.rs (`ScanGeometry::words`).
@group(0) @binding(0) var<storage, read_write> params: array<u32>;

const P_BATCH: u32 = 0u;        // sequences' batch size B
const P_DIRS: u32 = 1u;         // directions K
const P_CHANNELS: u32 = 2u;     // channels per direction E
const P_LEN: u32 = 3u;          // sequence length L
const P_STATES: u32 = 4u;       // states N
const P_MODE: u32 = 5u;         // 0: every direction walks 0..L; 1: SS2D cross-scan over an H x W map
const P_HEIGHT: u32 = 6u;       // map height (mode 1)
const P_WIDTH: u32 = 7u;        // map width (mode 1)
const P_U_DIRS: u32 = 8u;       // 1 when u is shared by all directions, else K
const P_CHUNK: u32 = 9u;        // positions per checkpoint chunk
const P_NCHUNKS: u32 = 10u;     // ceil(L / chunk)
const P_GROUP_CHUNKS: u32 = 11u; // chunks walked by one work item
const P_NGROUPS: u32 = 12u;     // ceil(nchunks / group_chunks)
const P_REVERSE: u32 = 13u;     // carry kernel: 1 walks the groups from last to first
const P_STATES_PAD: u32 = 14u;  // N rounded up to a multiple of STATE_BLOCK (B, C, ckpt layouts)
const P_NBLOCKS: u32 = 15u;     // STATES_PAD / STATE_BLOCK
const P_NEGROUPS: u32 = 16u;    // backward: ceil(E / LANES_E)
const P_COEF: u32 = 17u;        // word where coef starts in the bc buffer (after B and C)
const P_WORDS: u32 = 18u;

const LOG2E: f32 = 1.4426950408889634;
// States kept in registers (four vec4) by one invocation; larger N is walked in blocks of
// this size. B, C and the checkpoints are padded with zeros to a multiple of it.
const STATE_BLOCK: u32 = 16u;

// Spatial index (row-major over the H x W map, or plain position in mode 0) of the
// `pos`-th element that direction `k` visits. SS2D: k = 0 row-major, 1 column-major,
// 2 and 3 the reverses of 0 and 1.
fn spatial_index(mode: u32, k: u32, pos: u32, len: u32, height: u32, width: u32) -> u32 {
    if (mode == 0u) {
        return pos;
    }
    var q = pos;
    if ((k & 2u) != 0u) {
        q = len - 1u - pos;
    }
    if ((k & 1u) == 0u) {
        return q;
    }
    let h = q % height;
    let w = q / height;
    return h * width + w;
}

// softplus(s) = log(1 + e^s), taken as s above 20 like the reference implementation.
// log1p is evaluated with the (1 + x) - 1 correction so small e^s keep their precision.
fn softplus(s: f32) -> f32 {
    if (s > 20.0) {
        return s;
    }
    let x = exp(s);
    let w = 1.0 + x;
    if (w == 1.0) {
        return x;
    }
    return log(w) * (x / (w - 1.0));
}

// d softplus / ds, consistent with `softplus` above.
fn softplus_grad(s: f32) -> f32 {
    if (s > 20.0) {
        return 1.0;
    }
    return 1.0 / (1.0 + exp(-s));
}

// The work item of a one-channel-per-invocation kernel (reduce, forward, backward reduce):
// channel e of batch*direction bk = wid.z, walking group g = wid.y of positions [p0, p1).
struct Item {
    e: u32,
    n_ch: u32,
    len: u32,
    n_st: u32,
    n_pad: u32,
    mode: u32,
    height: u32,
    width: u32,
    n_groups: u32,
    k: u32,
    bk: u32,
    g: u32,
    p0: u32,
    p1: u32,
    // u[u_base + s * n_ch], delta/y/dy[d_base + s * n_ch] at spatial position s.
    u_base: u32,
    d_base: u32,
    // B and C rows (NP floats) at spatial position s start at b_base/c_base + s * n_pad.
    b_base: u32,
    c_base: u32,
    // This channel's row of coef (A[0..N], D, bias), as a word index into the bc buffer.
    coef_base: u32,
    // Aggregates / carries: [a (M) | b (M)], this item's state n at agg_base + n * n_ch.
    agg_m: u32,
    agg_base: u32,
}

fn channel_item(e: u32, wid: vec3<u32>) -> Item {
    var it: Item;
    it.e = e;
    it.n_ch = params[P_CHANNELS];
    it.len = params[P_LEN];
    it.n_st = params[P_STATES];
    it.n_pad = params[P_STATES_PAD];
    it.mode = params[P_MODE];
    it.height = params[P_HEIGHT];
    it.width = params[P_WIDTH];
    it.n_groups = params[P_NGROUPS];
    let n_dirs = params[P_DIRS];
    let batch = params[P_BATCH];
    it.bk = wid.z;
    it.k = wid.z % n_dirs;
    it.g = wid.y;
    let span = params[P_CHUNK] * params[P_GROUP_CHUNKS];
    it.p0 = wid.y * span;
    it.p1 = min(it.p0 + span, it.len);
    let u_dirs = params[P_U_DIRS];
    let ku = select(it.k, 0u, u_dirs == 1u);
    it.u_base = ((wid.z / n_dirs) * u_dirs + ku) * it.len * it.n_ch + e;
    it.d_base = it.bk * it.len * it.n_ch + e;
    it.b_base = it.bk * it.len * it.n_pad;
    it.c_base = (batch * n_dirs + it.bk) * it.len * it.n_pad;
    it.coef_base = params[P_COEF] + (it.k * it.n_ch + e) * (it.n_st + 2u);
    it.agg_m = batch * n_dirs * it.n_groups * it.n_pad * it.n_ch;
    it.agg_base = (it.bk * it.n_groups + it.g) * it.n_pad * it.n_ch + e;
    return it;
}
