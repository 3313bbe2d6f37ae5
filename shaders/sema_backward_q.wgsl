// @append sema_common.wgsl
// SEMA window attention, backward for the queries. Per query token i of a window (one
// invocation each), with P_ij = exp(s_ij - lse_i) recomputed from the forward's log-sum-exp:
//   delta_i = do_i . o_i,   dS_ij = P_ij (do_i . v_j - delta_i),
//   dq~_i = (1/sqrt(D)) sum_j dS_ij k~_j,   dq_i = R(-phi_i) dq~_i (RoPE is orthogonal).
// Writes dq into channels [0, C) of dqk and delta_i for the key/value kernel.
// Dispatch as sema_forward.wgsl.

// Bindings 0-3 (params, rope, qk, v) and the shared tiles are declared in sema_common.wgsl.
// stats = [lse (B, H, N) | delta (B, H, N)]: the forward's log-sum-exp in, delta out (one
// buffer for both keeps the kernel within WebGPU's default of eight storage buffers).
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> dout: array<f32>;
@group(0) @binding(7) var<storage, read_write> dqk: array<f32>;

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
    let valid = t < win.count;

    var q: array<f32, D>;
    var dq: array<f32, D>;
    var g: array<f32, D>;
    var rc = vec2<u32>(0u, 0u);
    var n = 0u;
    var row_lse = 0.0;
    var dlt = 0.0;
    if (valid) {
        rc = token_rc(win, t);
        n = rc.x * params[P_WIDTH] + rc.y;
        let base = (b * n_tok + n) * 2u * c + h * D;
        q = load_rotated(base, h, rc, scale);
        let ob = (b * n_tok + n) * c + h * D;
        for (var i = 0u; i < D; i++) {
            g[i] = dout[ob + i];
            dlt += g[i] * o[ob + i];
        }
        let li = (b * params[P_HEADS] + h) * n_tok + n;
        row_lse = stats[li];
        stats[params[P_BATCH] * params[P_HEADS] * n_tok + li] = dlt;
    }
    for (var i = 0u; i < D; i++) {
        dq[i] = 0.0;
    }

    let n_tiles = uniform_tile_count(win, lid);
    for (var kt = 0u; kt < n_tiles; kt++) {
        let first = kt * TILE;
        let rows = min(TILE, win.count - first);
        workgroupBarrier();
        load_key_tile(b, h, win, first, rows, lid);
        workgroupBarrier();
        if (valid) {
            for (var j = 0u; j < rows; j++) {
                var s = 0.0;
                var dp = 0.0;
                for (var i = 0u; i < D; i++) {
                    s += q[i] * tile_a[j * D + i];
                    dp += g[i] * tile_b[j * D + i];
                }
                let ds = exp(s - row_lse) * (dp - dlt);
                for (var i = 0u; i < D; i++) {
                    dq[i] += ds * tile_a[j * D + i];
                }
            }
        }
    }
    if (valid) {
        let base = (b * n_tok + n) * 2u * c + h * D;
        for (var p = 0u; p < HALF; p++) {
            let r = rotate(vec2<f32>(dq[2u * p], dq[2u * p + 1u]) * scale, rope_cs(h, p, rc), true);
            dqk[base + 2u * p] = r.x;
            dqk[base + 2u * p + 1u] = r.y;
        }
    }
}
