// One plane of a volume on screen: window/level (or RGB), then the label overlay (filled or
// outlined), nearest-voxel sampling. Drawn as a quad covering the view's rectangle; the
// rectangle's corners map to voxel coordinates given by the uniforms, so zoom, pan, the slice and
// the plane's orientation are all just `origin`, `span_u` and `span_v`.

struct View {
    // Continuous voxel coordinate of the rectangle's top-left corner (voxel centres at i + 0.5).
    origin: vec4<f32>,
    // Voxel-coordinate change from the left edge to the right edge of the rectangle.
    span_u: vec4<f32>,
    // Voxel-coordinate change from the top edge to the bottom edge.
    span_v: vec4<f32>,
    // x: window centre (level), y: window width, z: overlay opacity, w: unused.
    window: vec4<f32>,
    // x: 1 = RGB image, y: 1 = outline instead of fill, z: 1 = show labels, w: unused.
    flags: vec4<u32>,
    // A network's proposal under review: x = threshold as a quantised level (0..65535),
    // y: 1 = heat map instead of the outline, z: 1 = a proposal is shown, w: unused.
    proposal: vec4<f32>,
};

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var intensity: texture_3d<f32>;
@group(0) @binding(2) var colour: texture_3d<f32>;
@group(0) @binding(3) var labels: texture_3d<u32>;
// Label colours: label l at texel (l % 256, l / 256); alpha 0 hides a label.
@group(0) @binding(4) var lut: texture_2d<f32>;
// The proposal's foreground probability, quantised to 0..65535.
@group(0) @binding(5) var proposal: texture_3d<u32>;

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    // Two triangles covering the viewport: (0,0) (1,0) (0,1) / (0,1) (1,0) (1,1).
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
    );
    let uv = corners[i];
    var out: VsOut;
    out.position = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

fn voxel_at(p: vec3<f32>) -> vec3<i32> {
    return vec3<i32>(floor(p));
}

fn inside(v: vec3<i32>, dims: vec3<i32>) -> bool {
    return all(v >= vec3<i32>(0)) && all(v < dims);
}

fn label_at(p: vec3<f32>, dims: vec3<i32>) -> u32 {
    let v = voxel_at(p);
    if (!inside(v, dims)) {
        return 0u;
    }
    return textureLoad(labels, v, 0).x;
}

// Whether the proposal marks voxel position p at the current threshold.
fn proposed_at(p: vec3<f32>, dims: vec3<i32>) -> bool {
    let v = voxel_at(p);
    if (!inside(v, dims)) {
        return false;
    }
    return f32(textureLoad(proposal, v, 0).x) >= max(view.proposal.x, 1.0);
}

// Heat-map colour of a probability: transparent blue through green and yellow to red.
fn heat(t: f32) -> vec4<f32> {
    let r = clamp(1.5 * t - 0.25, 0.0, 1.0);
    let g = clamp(1.5 - abs(3.0 * t - 1.5), 0.0, 1.0);
    let b = clamp(1.0 - 2.0 * t, 0.0, 1.0);
    return vec4<f32>(r, g, b, 0.15 + 0.6 * t);
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let p = view.origin.xyz + view.span_u.xyz * in.uv.x + view.span_v.xyz * in.uv.y;
    // One screen pixel to the right and down, in voxel coordinates (for outlines); taken here,
    // in uniform control flow.
    let px = dpdx(p);
    let py = dpdy(p);

    let dims = vec3<i32>(textureDimensions(labels));
    let v = voxel_at(p);
    if (!inside(v, dims)) {
        return vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }

    // Window/level: grey images in their own units (HU for CT), RGB per channel in 0..255.
    var value: vec3<f32>;
    if (view.flags.x == 1u) {
        value = textureLoad(colour, v, 0).rgb * 255.0;
    } else {
        value = vec3<f32>(textureLoad(intensity, v, 0).x);
    }
    let lo = view.window.x - 0.5 * view.window.y;
    var base = clamp((value - vec3<f32>(lo)) / max(view.window.y, 1e-6), vec3<f32>(0.0), vec3<f32>(1.0));

    if (view.flags.z == 1u) {
        let l = textureLoad(labels, v, 0).x;
        if (l != 0u) {
            let c = textureLoad(lut, vec2<i32>(i32(l % 256u), i32(l / 256u)), 0);
            var alpha = c.a * view.window.z;
            if (view.flags.y == 1u) {
                let edge = label_at(p + px, dims) != l || label_at(p - px, dims) != l
                    || label_at(p + py, dims) != l || label_at(p - py, dims) != l;
                alpha = select(0.0, c.a, edge);
            }
            base = mix(base, c.rgb, alpha);
        }
    }

    // The proposal layer: a yellow outline with a light fill at the threshold, or a heat map.
    if (view.proposal.z == 1.0) {
        let q = f32(textureLoad(proposal, v, 0).x) / 65535.0;
        if (view.proposal.y == 1.0) {
            if (q > 0.02) {
                let h = heat(q);
                base = mix(base, h.rgb, h.a);
            }
        } else if (proposed_at(p, dims)) {
            let edge = !proposed_at(p + px, dims) || !proposed_at(p - px, dims)
                || !proposed_at(p + py, dims) || !proposed_at(p - py, dims);
            base = mix(base, vec3<f32>(1.0, 0.86, 0.1), select(0.2, 1.0, edge));
        }
    }
    return vec4<f32>(base, 1.0);
}
