// @append scan_common.wgsl
// Selective scan, pass 2 of 3 (carry), shared by the forward and the backward pass: turns the
// per-group aggregates (a, b) into the state entering each group, in place of b.
// carry_0 = 0, carry_{g+1} = a_g * carry_g + b_g, walking groups forward (P_REVERSE = 0,
// the forward recurrence) or from the last group to the first (P_REVERSE = 1, the adjoint).
// One invocation per (channel e, state n, batch*direction bk); the number of groups is small
// (L / group span), so this pass is a short sequential walk.

@group(0) @binding(1) var<storage, read_write> agg: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let n_ch = params[P_CHANNELS];
    let e = gid.x;
    if (e >= n_ch) {
        return;
    }
    let n_pad = params[P_STATES_PAD];
    let n_groups = params[P_NGROUPS];
    let reverse = params[P_REVERSE] == 1u;
    let n = wid.y;
    let bk = wid.z;
    let m = params[P_BATCH] * params[P_DIRS] * n_groups * n_pad * n_ch;
    var carry = 0.0;
    for (var i = 0u; i < n_groups; i++) {
        let g = select(i, n_groups - 1u - i, reverse);
        let idx = ((bk * n_groups + g) * n_pad + n) * n_ch + e;
        let a = agg[idx];
        let b = agg[m + idx];
        agg[m + idx] = carry;
        carry = a * carry + b;
    }
}
