// @append sema_common.wgsl
// SEMA window attention, backward for the keys and values. Per key token j of a window (one
// invocation each), over the window's queries i (streamed through workgroup memory):
//   P_ij = exp(s_ij - lse_i),   dv_j = sum_i P_ij do_i,
//   dS_ij = P_ij (do_i . v_j - delta_i),   dk~_j = (1/sqrt(D)) sum_i dS_ij q~_i,
//   dk_j = R(-phi_j) dk~_j.
// Reads delta from sema_backward_q.wgsl; writes dk into channels [C, 2C) of dqk, and dv.
// Dispatch as sema_forward.wgsl (the window's tokens now act as keys).

// Bindings 0-3 (params, rope, qk, v) and the shared tiles are declared in sema_common.wgsl.
// stats = [lse (B, H, N) | delta (B, H, N)], as sema_backward_q.wgsl leaves it.
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> dqk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;

// Queries (rotated, scaled) go to tile_a and their output gradients to tile_b, TILE rows
// each; then their lse and delta.
var<workgroup> rows_lse: array<f32, TILE>;
var<workgroup> rows_delta: array<f32, TILE>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let tiles = params[P_TILES];
    let win = window_of(wid.x / tiles);
    let t = (wid.x % tiles) * WG + lid;
    let c = params[P_CHANNELS];
    let n_tok = params[P_HEIGHT] * params[P_WIDTH];
    let scale = bitcast<f32>(params[P_SCALE]);
    let heads = params[P_HEADS];
    let valid = t < win.count;

    var k: array<f32, D>;
    var vj: array<f32, D>;
    var dk: array<f32, D>;
    var dvj: array<f32, D>;
    var rc = vec2<u32>(0u, 0u);
    var n = 0u;
    if (valid) {
        rc = token_rc(win, t);
        n = rc.x * params[P_WIDTH] + rc.y;
        let kb = (b * n_tok + n) * 2u * c + c + h * D;
        k = load_rotated(kb, h, rc, 1.0);
        let vb = (b * n_tok + n) * c + h * D;
        for (var i = 0u; i < D; i++) {
            vj[i] = v[vb + i];
        }
    }
    for (var i = 0u; i < D; i++) {
        dk[i] = 0.0;
        dvj[i] = 0.0;
    }

    let n_tiles = uniform_tile_count(win, lid);
    for (var qt = 0u; qt < n_tiles; qt++) {
        let first = qt * TILE;
        let rows = min(TILE, win.count - first);
        workgroupBarrier();
        for (var idx = lid; idx < TILE * HALF; idx += WG) {
            let i = idx / HALF;
            let p = idx % HALF;
            if (i < rows) {
                let qrc = token_rc(win, first + i);
                let qn = qrc.x * params[P_WIDTH] + qrc.y;
                let qb = (b * n_tok + qn) * 2u * c + h * D + 2u * p;
                let r = rotate(vec2<f32>(qk[qb], qk[qb + 1u]), rope_cs(h, p, qrc), false);
                tile_a[i * D + 2u * p] = r.x * scale;
                tile_a[i * D + 2u * p + 1u] = r.y * scale;
                let gb = (b * n_tok + qn) * c + h * D + 2u * p;
                tile_b[i * D + 2u * p] = dout[gb];
                tile_b[i * D + 2u * p + 1u] = dout[gb + 1u];
                if (p == 0u) {
                    let li = (b * heads + h) * n_tok + qn;
                    rows_lse[i] = stats[li];
                    rows_delta[i] = stats[params[P_BATCH] * heads * n_tok + li];
                }
            }
        }
        workgroupBarrier();
        if (valid) {
            for (var i = 0u; i < rows; i++) {
                var s = 0.0;
                var dp = 0.0;
                for (var x = 0u; x < D; x++) {
                    s += tile_a[i * D + x] * k[x];
                    dp += tile_b[i * D + x] * vj[x];
                }
                let pr = exp(s - rows_lse[i]);
                let ds = pr * (dp - rows_delta[i]);
                for (var x = 0u; x < D; x++) {
                    dvj[x] += pr * tile_b[i * D + x];
                    // q~ in tile_a carries the 1/sqrt(D) already.
                    dk[x] += ds * tile_a[i * D + x];
                }
            }
        }
    }
    if (valid) {
        let kb = (b * n_tok + n) * 2u * c + c + h * D;
        for (var p = 0u; p < HALF; p++) {
            let r = rotate(vec2<f32>(dk[2u * p], dk[2u * p + 1u]), rope_cs(h, p, rc), true);
            dqk[kb + 2u * p] = r.x;
            dqk[kb + 2u * p + 1u] = r.y;
        }
        let vb = (b * n_tok + n) * c + h * D;
        for (var i = 0u; i < D; i++) {
            dv[vb + i] = dvj[i];
        }
    }
}
