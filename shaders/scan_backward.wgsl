// @append scan_common.wgsl
// Selective scan, backward pass 3 of 3 (apply). A workgroup owns one batch*direction bk, one
// group of positions, LANES_E channels and one block of LANES_N states: one (e, n) pair per
// invocation. It walks the group's checkpoint chunks from last to first; per chunk it
//   (a) restarts the forward recurrence from the saved state, keeping h_{t-1} per position,
//   (b) walks back with the adjoint lambda_t = g_t C_t[n] + a_{t+1} lambda_{t+1}, entering
//       the group with pass 2's carry,
// and reduces the per-(e, n) terms in workgroup memory: over n for du and d(delta) (partial
// per state block), over the workgroup's channels for dB and dC (partial per channel group);
// the host sums the partials. Inputs of each tile of TILE positions are staged in workgroup
// memory once (softplus included), so the per-position loop reads no global memory.
//   dud   = [du (NB, B, K, L, E) | ddelta (NB, B, K, L, E)]
//   dpart = [dB (B*K, NEG, L, N) | dC (B*K, NEG, L, N) | dA (B*K, NG, E, N)]
// Control flow around barriers depends only on workgroup-uniform values (workgroup_id and
// values read through workgroupUniformLoad), as WGSL's uniformity rules require.

@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read_write> bc: array<f32>;
@group(0) @binding(4) var<storage, read_write> coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> ckpt: array<f32>;
@group(0) @binding(7) var<storage, read_write> agg: array<f32>;
@group(0) @binding(8) var<storage, read_write> dud: array<f32>;
@group(0) @binding(9) var<storage, read_write> dpart: array<f32>;

const WORKGROUP: u32 = 256u;
const LANES_E: u32 = 16u;
const LANES_N: u32 = 16u;
// Checkpoint chunk (positions); h_{t-1} of one chunk is kept per invocation.
const MAX_CHUNK: u32 = 32u;
// Positions staged in workgroup memory at a time.
const TILE: u32 = 16u;

// Staged tile: [position][channel] for delta (softplus), its derivative, u and dy;
// [position][state] for B and C.
var<workgroup> s_dt: array<f32, 256>;
var<workgroup> s_sg: array<f32, 256>;
var<workgroup> s_u: array<f32, 256>;
var<workgroup> s_g: array<f32, 256>;
var<workgroup> s_b: array<f32, 256>;
var<workgroup> s_c: array<f32, 256>;
// Two buffers x four terms x WORKGROUP invocations, as vec4s. The terms reduced over states
// (dd, du) are stored channel-major, those reduced over channels (db, dc) state-major, so
// every reduction reads four consecutive vec4s.
var<workgroup> red: array<vec4<f32>, 512>;
var<workgroup> wg_p0: u32;
var<workgroup> wg_p1: u32;
var<workgroup> wg_chunk: u32;

struct Tile {
    mode: u32,
    k: u32,
    len: u32,
    height: u32,
    width: u32,
    n_ch: u32,
    n_pad: u32,
    e0: u32,
    n0: u32,
    u_base: u32,
    d_base: u32,
    b_base: u32,
    c_base: u32,
    bias_base: u32,
    coef_stride: u32,
}

// Stage positions [t, t + TILE) (those below t_end) into workgroup memory.
fn stage(tl: Tile, idx: u32, t: u32, t_end: u32) {
    let i = idx / LANES_E;
    let j = idx % LANES_E;
    let pos = t + i;
    var dt = 0.0;
    var sg = 0.0;
    var uv = 0.0;
    var gy = 0.0;
    var bn = 0.0;
    var cn = 0.0;
    if (pos < t_end) {
        let s = spatial_index(tl.mode, tl.k, pos, tl.len, tl.height, tl.width);
        let e = min(tl.e0 + j, tl.n_ch - 1u);
        let raw = delta[tl.d_base + s * tl.n_ch + e] + coef[tl.bias_base + e * tl.coef_stride];
        dt = softplus(raw);
        sg = softplus_grad(raw);
        uv = u[tl.u_base + s * tl.n_ch + e];
        gy = dy[tl.d_base + s * tl.n_ch + e];
        bn = bc[tl.b_base + s * tl.n_pad + tl.n0 + j];
        cn = bc[tl.c_base + s * tl.n_pad + tl.n0 + j];
    }
    s_dt[idx] = dt;
    s_sg[idx] = sg;
    s_u[idx] = uv;
    s_g[idx] = gy;
    s_b[idx] = bn;
    s_c[idx] = cn;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) idx: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n_ch = params[P_CHANNELS];
    let n_dirs = params[P_DIRS];
    let len = params[P_LEN];
    let n_st = params[P_STATES];
    let n_pad = params[P_STATES_PAD];
    let n_blocks = params[P_NBLOCKS];
    let n_chunks = params[P_NCHUNKS];
    let n_groups = params[P_NGROUPS];
    let n_egroups = params[P_NEGROUPS];
    let batch = params[P_BATCH];
    let bk = wid.z;
    let b = bk / n_dirs;
    let k = bk % n_dirs;
    let g = wid.y;
    let eg = wid.x % n_egroups;
    let nb = wid.x / n_egroups;
    let el = idx % LANES_E;
    let nl = idx / LANES_E;
    let e = eg * LANES_E + el;
    let n = nb * LANES_N + nl;
    let live = e < n_ch && n < n_st;

    if (idx == 0u) {
        let chunk = params[P_CHUNK];
        let span = chunk * params[P_GROUP_CHUNKS];
        wg_p0 = g * span;
        wg_p1 = min(g * span + span, len);
        wg_chunk = chunk;
    }
    let p0 = workgroupUniformLoad(&wg_p0);
    let p1 = workgroupUniformLoad(&wg_p1);
    let chunk = workgroupUniformLoad(&wg_chunk);

    let u_dirs = params[P_U_DIRS];
    let ku = select(k, 0u, u_dirs == 1u);
    let coef_stride = n_st + 2u;
    var tl: Tile;
    tl.mode = params[P_MODE];
    tl.k = k;
    tl.len = len;
    tl.height = params[P_HEIGHT];
    tl.width = params[P_WIDTH];
    tl.n_ch = n_ch;
    tl.n_pad = n_pad;
    tl.e0 = eg * LANES_E;
    tl.n0 = nb * LANES_N;
    tl.u_base = (b * u_dirs + ku) * len * n_ch;
    tl.d_base = bk * len * n_ch;
    tl.b_base = bk * len * n_pad;
    tl.c_base = (batch * n_dirs + bk) * len * n_pad;
    tl.bias_base = k * n_ch * coef_stride + n_st + 1u;
    tl.coef_stride = coef_stride;

    let coef_base = (k * n_ch + min(e, n_ch - 1u)) * coef_stride;
    let a_n = select(0.0, coef[coef_base + min(n, n_st - 1u)], live);
    let a2 = a_n * LOG2E;
    let skip = select(0.0, coef[coef_base + n_st], nb == 0u);
    let m_agg = batch * n_dirs * n_groups * n_pad * n_ch;
    let bkle = batch * n_dirs * len * n_ch;
    let q = batch * n_dirs * n_egroups * len * n_st;

    var mu = 0.0;
    if (n_groups > 1u && live) {
        mu = agg[m_agg + ((bk * n_groups + g) * n_pad + n) * n_ch + e];
    }
    var da_acc = 0.0;
    var hprev: array<f32, 32>;
    var step = 0u;

    let first_chunk = p0 / chunk;
    let n_own = (p1 - p0 + chunk - 1u) / chunk;
    for (var ci = 0u; ci < n_own; ci++) {
        let c = first_chunk + n_own - 1u - ci;
        let t0 = c * chunk;
        let t1 = min(t0 + chunk, p1);
        // (a) forward restart from the checkpoint.
        var h = 0.0;
        if (live) {
            h = ckpt[((bk * n_chunks + c) * n_pad + n) * n_ch + e];
        }
        for (var tile = 0u; tile < MAX_CHUNK / TILE; tile++) {
            let tb = t0 + tile * TILE;
            if (tb < t1) {
                stage(tl, idx, tb, t1);
                workgroupBarrier();
                for (var i = 0u; i < TILE; i++) {
                    let r = i * LANES_E + el;
                    let w = i * LANES_E + nl;
                    hprev[tile * TILE + i] = h;
                    h = exp2(s_dt[r] * a2) * h + s_dt[r] * s_u[r] * s_b[w];
                }
                workgroupBarrier();
            }
        }
        // (b) adjoint walk with the workgroup reductions.
        for (var tt = 0u; tt < MAX_CHUNK / TILE; tt++) {
            let tile = MAX_CHUNK / TILE - 1u - tt;
            let tb = t0 + tile * TILE;
            if (tb < t1) {
                stage(tl, idx, tb, t1);
                workgroupBarrier();
                for (var ii = 0u; ii < TILE; ii++) {
                    let i = TILE - 1u - ii;
                    let pos = tb + i;
                    if (pos < t1) {
                        let r = i * LANES_E + el;
                        let w = i * LANES_E + nl;
                        let dt = s_dt[r];
                        let uv = s_u[r];
                        let gy = s_g[r];
                        let bn = s_b[w];
                        let ab = exp2(dt * a2);
                        let hp = hprev[tile * TILE + i];
                        var lam = 0.0;
                        if (live) {
                            lam = gy * s_c[w] + mu;
                        }
                        da_acc += lam * dt * ab * hp;
                        mu = ab * lam;
                        let buf = (step & 1u) * WORKGROUP;
                        let em = el * LANES_N + nl;
                        red[buf + em / 4u][em % 4u] = lam * (a_n * ab * hp + bn * uv);
                        red[buf + 64u + em / 4u][em % 4u] = lam * bn;
                        red[buf + 128u + idx / 4u][idx % 4u] = lam * dt * uv;
                        red[buf + 192u + idx / 4u][idx % 4u] = select(0.0, gy * (ab * hp + dt * uv * bn), live);
                        step += 1u;
                        workgroupBarrier();
                        let s = spatial_index(tl.mode, k, pos, len, tl.height, tl.width);
                        if (idx < LANES_E) {
                            if (e < n_ch) {
                                let o4 = buf + idx * 4u;
                                let vdd = red[o4] + red[o4 + 1u] + red[o4 + 2u] + red[o4 + 3u];
                                let vdu = red[o4 + 64u] + red[o4 + 65u] + red[o4 + 66u] + red[o4 + 67u];
                                let sdd = vdd.x + vdd.y + vdd.z + vdd.w;
                                let sdu = vdu.x + vdu.y + vdu.z + vdu.w;
                                let o = nb * bkle + tl.d_base + s * n_ch + e;
                                dud[o] = dt * sdu + skip * gy;
                                dud[n_blocks * bkle + o] = sdd * s_sg[r];
                            }
                        } else if (idx >= 32u && idx < 32u + LANES_N) {
                            let ns = nb * LANES_N + idx - 32u;
                            if (ns < n_st) {
                                let o4 = buf + 128u + (idx - 32u) * 4u;
                                let vdb = red[o4] + red[o4 + 1u] + red[o4 + 2u] + red[o4 + 3u];
                                let vdc = red[o4 + 64u] + red[o4 + 65u] + red[o4 + 66u] + red[o4 + 67u];
                                let sdb = vdb.x + vdb.y + vdb.z + vdb.w;
                                let sdc = vdc.x + vdc.y + vdc.z + vdc.w;
                                let o = ((bk * n_egroups + eg) * len + s) * n_st + ns;
                                dpart[o] = sdb;
                                dpart[q + o] = sdc;
                            }
                        }
                    }
                }
                workgroupBarrier();
            }
        }
    }
    if (live) {
        dpart[2u * q + ((bk * n_groups + g) * n_ch + e) * n_st + n] = da_acc;
    }
}
