// Device-to-device copy in a compute shader (vec4 loads and stores, grid-stride loop): the
// memory-bandwidth reference that `medseg bench` reports kernels against.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

const WORKGROUP: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = arrayLength(&dst);
    let stride = nwg.x * WORKGROUP;
    for (var i = gid.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}
