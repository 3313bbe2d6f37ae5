// @append scan_common.wgsl
// Selective scan, backward pass 3 of 3 (apply). A workgroup owns one batch*direction bk, one
// group of positions and LANES_E channels x LANES_N states (one (e, n) pair per invocation).
// It walks the group's checkpoint chunks from last to first; per chunk it
//   (a) restarts the forward recurrence from the saved state and keeps h_{t-1} in registers,
//   (b) walks back with the adjoint lambda_t = g_t C_t[n] + a_{t+1} lambda_{t+1}, entering
//       the group with pass 2's carry,
// and reduces the per-(e, n) terms in workgroup memory: over n for du and d(delta), over the
// workgroup's channels for dB and dC (partial sums per channel group, summed by the host).
//   dud   = [du (B, K, L, E) | ddelta (B, K, L, E)]
//   dpart = [dB (B*K, NEG, L, N) | dC (B*K, NEG, L, N) | dA ((B*K*NG + ...) , E, N)]
// Control flow around barriers depends only on workgroup-uniform values (workgroup_id and
// values read through workgroupUniformLoad), as WGSL's uniformity rules require.

@group(0) @binding(0) var<storage, read_write> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> bc: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> ckpt: array<f32>;
@group(0) @binding(6) var<storage, read_write> agg: array<f32>;
@group(0) @binding(7) var<storage, read_write> dud: array<f32>;
@group(0) @binding(8) var<storage, read_write> dpart: array<f32>;
@group(0) @binding(9) var<storage, read_write> params: array<u32>;

const WORKGROUP: u32 = 256u;
// Largest checkpoint chunk: h_{t-1} of one chunk is kept in registers.
const MAX_CHUNK: u32 = 32u;

// Two buffers x four terms (dd, du, db, dc) x WORKGROUP invocations.
var<workgroup> red: array<f32, 2048>;
var<workgroup> wg_p0: u32;
var<workgroup> wg_p1: u32;
var<workgroup> wg_chunk: u32;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) idx: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n_ch = params[P_CHANNELS];
    let n_dirs = params[P_DIRS];
    let len = params[P_LEN];
    let n_st = params[P_STATES];
    let mode = params[P_MODE];
    let height = params[P_HEIGHT];
    let width = params[P_WIDTH];
    let n_chunks = params[P_NCHUNKS];
    let n_groups = params[P_NGROUPS];
    let lanes_e = params[P_LANES_E];
    let n_egroups = params[P_NEGROUPS];
    let batch = params[P_BATCH];
    let bk = wid.z;
    let b = bk / n_dirs;
    let k = bk % n_dirs;
    let g = wid.y;
    let eg = wid.x;
    let el = idx % lanes_e;
    let n = idx / lanes_e;
    let e = eg * lanes_e + el;
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
    let u_base = (b * u_dirs + ku) * len * n_ch;
    let d_base = bk * len * n_ch;
    let b_base = bk * len * n_st;
    let c_base = (batch * n_dirs + bk) * len * n_st;
    let ch = k * n_ch + min(e, n_ch - 1u);
    let coef_base = ch * (n_st + 2u);
    let a_n = select(0.0, coef[coef_base + min(n, n_st - 1u)], live);
    let a2 = a_n * LOG2E;
    let skip = coef[coef_base + n_st];
    let bias = coef[coef_base + n_st + 1u];
    let m_agg = batch * n_dirs * n_groups * n_st * n_ch;
    let bkle = batch * n_dirs * len * n_ch;
    let q = batch * n_dirs * n_egroups * len * n_st;
    let e_ld = min(e, n_ch - 1u);
    let n_ld = min(n, n_st - 1u);

    var mu = 0.0;
    if (n_groups > 1u && live) {
        mu = agg[m_agg + ((bk * n_groups + g) * n_st + n) * n_ch + e];
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
            h = ckpt[((bk * n_chunks + c) * n_st + n) * n_ch + e];
        }
        for (var i = 0u; i < MAX_CHUNK; i++) {
            let pos = t0 + i;
            if (pos < t1) {
                let s = spatial_index(mode, k, pos, len, height, width);
                let dt = softplus(delta[d_base + s * n_ch + e_ld] + bias);
                let uv = u[u_base + s * n_ch + e_ld];
                let bn = bc[b_base + s * n_st + n_ld];
                hprev[i] = h;
                h = exp2(dt * a2) * h + dt * uv * bn;
            }
        }
        // (b) adjoint walk with the workgroup reductions.
        for (var ii = 0u; ii < MAX_CHUNK; ii++) {
            let i = MAX_CHUNK - 1u - ii;
            let pos = t0 + i;
            if (pos < t1) {
                let s = spatial_index(mode, k, pos, len, height, width);
                let draw = delta[d_base + s * n_ch + e_ld] + bias;
                let dt = softplus(draw);
                let uv = u[u_base + s * n_ch + e_ld];
                let gy = dy[d_base + s * n_ch + e_ld];
                let bn = bc[b_base + s * n_st + n_ld];
                let cn = bc[c_base + s * n_st + n_ld];
                let ab = exp2(dt * a2);
                let hp = hprev[i];
                let ht = ab * hp + dt * uv * bn;
                var lam = 0.0;
                if (live) {
                    lam = gy * cn + mu;
                }
                da_acc += lam * dt * ab * hp;
                mu = ab * lam;
                let buf = (step & 1u) * 4u * WORKGROUP;
                red[buf + idx] = lam * (a_n * ab * hp + bn * uv);
                red[buf + WORKGROUP + idx] = lam * bn;
                red[buf + 2u * WORKGROUP + idx] = lam * dt * uv;
                red[buf + 3u * WORKGROUP + idx] = select(0.0, gy * ht, live);
                step += 1u;
                workgroupBarrier();
                if (idx < lanes_e && e < n_ch) {
                    var sdd = 0.0;
                    var sdu = 0.0;
                    for (var j = 0u; j < WORKGROUP; j += lanes_e) {
                        sdd += red[buf + j + idx];
                        sdu += red[buf + WORKGROUP + j + idx];
                    }
                    let o = d_base + s * n_ch + e;
                    dud[o] = dt * sdu + skip * gy;
                    dud[bkle + o] = sdd * softplus_grad(draw);
                }
                if (idx < n_st) {
                    var sdb = 0.0;
                    var sdc = 0.0;
                    let row = idx * lanes_e;
                    for (var j = 0u; j < lanes_e; j++) {
                        sdb += red[buf + 2u * WORKGROUP + row + j];
                        sdc += red[buf + 3u * WORKGROUP + row + j];
                    }
                    let o = ((bk * n_egroups + eg) * len + s) * n_st + idx;
                    dpart[o] = sdb;
                    dpart[q + o] = sdc;
                }
            }
        }
    }
    if (live) {
        dpart[2u * q + ((bk * n_groups + g) * n_ch + e) * n_st + n] = da_acc;
    }
}
