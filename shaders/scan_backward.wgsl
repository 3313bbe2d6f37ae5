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
// memory once (softplus included), so the per-position loop reads no global memory. The
// adjoint walk runs RT positions between two barriers, keeping each invocation's lambda,
// its A-term and h_t per position; the reductions of those RT positions then run on all
// invocations at once (one sum of 16 terms each).
//   grads = [dud | dpart], with
//   dud   = [du (NB, B, K, L, E) | ddelta (NB, B, K, L, E)]
//   dpart = [dB (B*K, NEG, L, N) | dC (B*K, NEG, L, N) | dA (B*K, NG, E, N)]
// Control flow around barriers depends only on workgroup-uniform values (workgroup_id and
// values read through workgroupUniformLoad), as WGSL's uniformity rules require.

@group(0) @binding(1) var<storage, read_write> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
// bc holds B and C, then coef from word params[P_COEF]; grads holds dud, then dpart from
// word 2 * NB * B*K*L*E (eight storage buffers in all, WebGPU's default limit).
@group(0) @binding(3) var<storage, read_write> bc: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> ckpt: array<f32>;
@group(0) @binding(6) var<storage, read_write> agg: array<f32>;
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;

const WORKGROUP: u32 = 256u;
const LANES_E: u32 = 16u;
const LANES_N: u32 = 16u;
// Checkpoint chunk (positions); h_{t-1} of one chunk is kept per invocation.
const MAX_CHUNK: u32 = 32u;
// Positions staged in workgroup memory at a time.
const TILE: u32 = 8u;
// Positions of the adjoint walk between two barriers.
const RT: u32 = 4u;
// Row length of the per-position term arrays: 16 rows of 16 invocations, padded to 17 so that
// both the row-wise and the column-wise sums are free of bank conflicts.
const ROW: u32 = 17u;
const TERMS: u32 = 272u;

// Staged tile: [position][channel] for delta (softplus), its derivative, u and dy;
// [position][state] for B and C.
var<workgroup> s_dt: array<f32, 128>;
var<workgroup> s_sg: array<f32, 128>;
var<workgroup> s_u: array<f32, 128>;
var<workgroup> s_g: array<f32, 128>;
var<workgroup> s_b: array<f32, 128>;
var<workgroup> s_c: array<f32, 128>;
// Per position of an RT block, per invocation (nl * ROW + el): lambda, lambda * A * a_t * h_{t-1}
// and h_t.
var<workgroup> t_lam: array<f32, 1088>;
var<workgroup> t_x: array<f32, 1088>;
var<workgroup> t_h: array<f32, 1088>;
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
    if (idx >= TILE * LANES_E) {
        return;
    }
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
        let raw = delta[tl.d_base + s * tl.n_ch + e] + bc[tl.bias_base + e * tl.coef_stride];
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
    tl.bias_base = params[P_COEF] + k * n_ch * coef_stride + n_st + 1u;
    tl.coef_stride = coef_stride;

    let coef_base = params[P_COEF] + (k * n_ch + min(e, n_ch - 1u)) * coef_stride;
    let a_n = select(0.0, bc[coef_base + min(n, n_st - 1u)], live);
    let a2 = a_n * LOG2E;
    let skip = select(0.0, bc[coef_base + n_st], nb == 0u);
    let m_agg = batch * n_dirs * n_groups * n_pad * n_ch;
    let bkle = batch * n_dirs * len * n_ch;
    // dpart starts after dud in the grads buffer.
    let dpart0 = 2u * n_blocks * bkle;
    let q = batch * n_dirs * n_egroups * len * n_st;

    var mu = 0.0;
    if (n_groups > 1u && live) {
        mu = agg[m_agg + ((bk * n_groups + g) * n_pad + n) * n_ch + e];
    }
    var da_acc = 0.0;
    var hprev: array<f32, 32>;

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
        // (b) adjoint walk, RT positions at a time, then their reductions on all invocations.
        for (var tt = 0u; tt < MAX_CHUNK / TILE; tt++) {
            let tile = MAX_CHUNK / TILE - 1u - tt;
            let tb = t0 + tile * TILE;
            if (tb < t1) {
                stage(tl, idx, tb, t1);
                workgroupBarrier();
                for (var rr = 0u; rr < TILE / RT; rr++) {
                    let rb = TILE - RT * (rr + 1u);
                    for (var ii = 0u; ii < RT; ii++) {
                        let i = rb + RT - 1u - ii;
                        let slot = (RT - 1u - ii) * TERMS + nl * ROW + el;
                        var lam = 0.0;
                        var x = 0.0;
                        var ht = 0.0;
                        if (tb + i < t1) {
                            let r = i * LANES_E + el;
                            let w = i * LANES_E + nl;
                            let dt = s_dt[r];
                            let ab = exp2(dt * a2);
                            let hp = hprev[tile * TILE + i];
                            if (live) {
                                lam = s_g[r] * s_c[w] + mu;
                                ht = ab * hp + dt * s_u[r] * s_b[w];
                            }
                            da_acc += lam * dt * ab * hp;
                            mu = ab * lam;
                            x = lam * a_n * ab * hp;
                        }
                        t_lam[slot] = lam;
                        t_x[slot] = x;
                        t_h[slot] = ht;
                    }
                    workgroupBarrier();
                    // Jobs: per position of the block, 16 channel sums (du, d(delta)), 16 dB and
                    // 16 dC sums.
                    let jp = idx / 64u;
                    let job = idx % 64u;
                    let lane = job % 16u;
                    let i = rb + jp;
                    let pos = tb + i;
                    if (jp < RT && job < 48u && pos < t1) {
                        let s = spatial_index(tl.mode, k, pos, len, tl.height, tl.width);
                        let base = jp * TERMS;
                        if (job < 16u) {
                            // Channel e = e0 + lane (= this invocation's el).
                            var sx = 0.0;
                            var slb = 0.0;
                            for (var j = 0u; j < LANES_N; j++) {
                                let o = base + j * ROW + lane;
                                sx += t_x[o];
                                slb += t_lam[o] * s_b[i * LANES_E + j];
                            }
                            if (e < n_ch) {
                                let r = i * LANES_E + lane;
                                let o = nb * bkle + tl.d_base + s * n_ch + e;
                                grads[o] = s_dt[r] * slb + skip * s_g[r];
                                grads[n_blocks * bkle + o] = (sx + s_u[r] * slb) * s_sg[r];
                            }
                        } else {
                            let ns = nb * LANES_N + lane;
                            var acc = 0.0;
                            if (job < 32u) {
                                for (var j = 0u; j < LANES_E; j++) {
                                    let r = i * LANES_E + j;
                                    acc += t_lam[base + lane * ROW + j] * s_dt[r] * s_u[r];
                                }
                            } else {
                                for (var j = 0u; j < LANES_E; j++) {
                                    acc += t_h[base + lane * ROW + j] * s_g[i * LANES_E + j];
                                }
                            }
                            if (ns < n_st) {
                                let o = ((bk * n_egroups + eg) * len + s) * n_st + ns;
                                grads[dpart0 + select(0u, q, job >= 32u) + o] = acc;
                            }
                        }
                    }
                    workgroupBarrier();
                }
            }
        }
    }
    if (live) {
        grads[dpart0 + 2u * q + ((bk * n_groups + g) * n_ch + e) * n_st + n] = da_acc;
    }
}
