// @append sema_common.wgsl
// SEMA window attention, forward: per head and window, o_i = softmax_j(s_ij) v_j over the
// window's keys with s_ij = q~_i . k~_j / sqrt(D) (q~, k~ RoPE-rotated), plus the row
// log-sum-exp that the backward kernels recompute the probabilities from (no w^2 x w^2 matrix
// is kept). One invocation per query token; the window's keys and values stream through
// workgroup memory in tiles of TILE rows, with an online (running-maximum) softmax.
// Dispatch: x = window * tiles + tile, y = head, z = batch.

// Bindings 0-3 (params, rope, qk, v) and the shared tiles are declared in sema_common.wgsl.
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

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
    var acc: array<f32, D>;
    var rc = vec2<u32>(0u, 0u);
    var n = 0u;
    if (valid) {
        rc = token_rc(win, t);
        n = rc.x * params[P_WIDTH] + rc.y;
        let base = (b * n_tok + n) * 2u * c + h * D;
        q = load_rotated(base, h, rc, scale);
    }
    for (var i = 0u; i < D; i++) {
        acc[i] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;

    let n_tiles = uniform_tile_count(win, lid);
    for (var kt = 0u; kt < n_tiles; kt++) {
        let first = kt * TILE;
        let rows = min(TILE, win.count - first);
        workgroupBarrier();
        load_key_tile(b, h, win, first, rows, lid);
        workgroupBarrier();
        if (valid) {
            var s: array<f32, TILE>;
            var tile_max = -3.0e38;
            for (var j = 0u; j < rows; j++) {
                var dot = 0.0;
                for (var i = 0u; i < D; i++) {
                    dot += q[i] * tile_a[j * D + i];
                }
                s[j] = dot;
                tile_max = max(tile_max, dot);
            }
            let m_new = max(m, tile_max);
            let correction = exp(m - m_new);
            l *= correction;
            for (var i = 0u; i < D; i++) {
                acc[i] *= correction;
            }
            for (var j = 0u; j < rows; j++) {
                let e = exp(s[j] - m_new);
                l += e;
                for (var i = 0u; i < D; i++) {
                    acc[i] += e * tile_b[j * D + i];
                }
            }
            m = m_new;
        }
    }
    if (valid) {
        let ob = (b * n_tok + n) * c + h * D;
        let inv = 1.0 / l;
        for (var i = 0u; i < D; i++) {
            o[ob + i] = acc[i] * inv;
        }
        lse[(b * params[P_HEADS] + h) * n_tok + n] = m + log(l);
    }
}
