//! The viewer on the GPU: each document's image and labels are uploaded once as 3-D textures
//! (labels then only in the boxes an edit touched) and every plane is drawn by
//! `shaders/slice_view.wgsl` inside egui's render pass, with window/level, the overlay and the
//! outline computed per pixel.

use super::document::{Document, ViewMapping};
use bytemuck::{Pod, Zeroable};
use egui_wgpu::wgpu;

const SHADER: &str = include_str!("../../../shaders/slice_view.wgsl");
/// Largest slab uploaded in one `write_texture` (keeps the staging copy small).
const UPLOAD_SLAB_BYTES: usize = 64 << 20;

/// Uniforms of one view (layout of `View` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ViewUniforms {
    pub origin: [f32; 4],
    pub span_u: [f32; 4],
    pub span_v: [f32; 4],
    pub window: [f32; 4],
    pub flags: [u32; 4],
    /// [threshold level, heat map, shown, 0] of the proposal under review.
    pub proposal: [f32; 4],
}

impl ViewUniforms {
    /// The uniforms drawing `mapping` into the screen rectangle `widget` ([min x, min y, max x,
    /// max y], points).
    pub fn new(doc: &Document, mapping: &ViewMapping, widget: [f32; 4]) -> Self {
        let o = mapping.voxel_at(widget[0], widget[1]);
        let r = mapping.voxel_at(widget[2], widget[1]);
        let b = mapping.voxel_at(widget[0], widget[3]);
        let v4 = |p: [f64; 3]| [p[0] as f32, p[1] as f32, p[2] as f32, 0.0];
        let d = |p: [f64; 3]| [p[0] - o[0], p[1] - o[1], p[2] - o[2]];
        let rgb = doc.image.channels == 3;
        // RGB is stored as unorm 0..1; the window is in 0..255 units.
        ViewUniforms {
            origin: v4(o),
            span_u: v4(d(r)),
            span_v: v4(d(b)),
            window: [doc.window.level, doc.window.width, doc.opacity, 0.0],
            flags: [rgb as u32, doc.outline as u32, doc.show_labels as u32, 0],
            proposal: match &doc.proposal {
                Some(r) => [
                    medseg_data::proposal::threshold_level(r.threshold) as f32,
                    r.heat_map as u32 as f32,
                    1.0,
                    0.0,
                ],
                None => [0.0; 4],
            },
        }
    }
}

/// Pipeline and bind-group layout, made once per target format.
pub struct SliceRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
}

fn texture_entry(
    binding: u32,
    sample_type: wgpu::TextureSampleType,
    dim: wgpu::TextureViewDimension,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type,
            view_dimension: dim,
            multisampled: false,
        },
        count: None,
    }
}

impl SliceRenderer {
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("slice_view.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let float = wgpu::TextureSampleType::Float { filterable: false };
        let d3 = wgpu::TextureViewDimension::D3;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("slice_view"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                texture_entry(1, float, d3),
                texture_entry(2, float, d3),
                texture_entry(3, wgpu::TextureSampleType::Uint, d3),
                texture_entry(4, float, wgpu::TextureViewDimension::D2),
                texture_entry(5, wgpu::TextureSampleType::Uint, d3),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("slice_view"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("slice_view"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        SliceRenderer { pipeline, layout }
    }
}

/// A document's textures and one uniform buffer + bind group per view slot.
pub struct GpuDoc {
    labels: wgpu::Texture,
    /// The proposal's quantised probabilities (zero without one).
    proposal: wgpu::Texture,
    proposal_revision: Option<u64>,
    /// Which proposal's probabilities the texture holds (its `Review::id`).
    proposal_key: Option<u64>,
    lut: wgpu::Texture,
    slots: Vec<(wgpu::Buffer, wgpu::BindGroup)>,
    style_revision: Option<u64>,
    dims: [usize; 3],
}

fn texture(
    device: &wgpu::Device,
    label: &str,
    size: [usize; 3],
    format: wgpu::TextureFormat,
    dimension: wgpu::TextureDimension,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: size[0] as u32,
            height: size[1] as u32,
            depth_or_array_layers: size[2] as u32,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

/// Writes `bytes` (a box of `size` texels of `texel` bytes, x fastest) at `origin`, in slabs of
/// whole z-planes.
fn upload(
    queue: &wgpu::Queue,
    tex: &wgpu::Texture,
    origin: [usize; 3],
    size: [usize; 3],
    texel: usize,
    bytes: &[u8],
) {
    let plane = size[0] * size[1] * texel;
    let per_slab = (UPLOAD_SLAB_BYTES / plane.max(1)).max(1);
    let mut z = 0;
    while z < size[2] {
        let n = per_slab.min(size[2] - z);
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: tex,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: origin[0] as u32,
                    y: origin[1] as u32,
                    z: (origin[2] + z) as u32,
                },
                aspect: wgpu::TextureAspect::All,
            },
            &bytes[z * plane..(z + n) * plane],
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some((size[0] * texel) as u32),
                rows_per_image: Some(size[1] as u32),
            },
            wgpu::Extent3d {
                width: size[0] as u32,
                height: size[1] as u32,
                depth_or_array_layers: n as u32,
            },
        );
        z += n;
    }
}

/// Views drawn at once (axial, coronal, sagittal).
pub const VIEW_SLOTS: usize = 3;

impl GpuDoc {
    /// Uploads the image and labels. Fails with a message when the volume is larger than this
    /// GPU's 3-D textures allow.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        renderer: &SliceRenderer,
        doc: &mut Document,
    ) -> Result<Self, String> {
        let dims = doc.dims();
        let max = device.limits().max_texture_dimension_3d as usize;
        if dims.iter().any(|&d| d > max) {
            return Err(format!(
                "the image is {}×{}×{} voxels; this GPU shows volumes up to {max} voxels along each \
                 axis",
                dims[0], dims[1], dims[2]
            ));
        }
        let one = [1, 1, 1];
        let d3 = wgpu::TextureDimension::D3;
        let rgb = doc.image.channels == 3;
        let intensity = texture(
            device,
            "intensity",
            if rgb { one } else { dims },
            wgpu::TextureFormat::R32Float,
            d3,
        );
        let colour = texture(
            device,
            "colour",
            if rgb { dims } else { one },
            wgpu::TextureFormat::Rgba8Unorm,
            d3,
        );
        if rgb {
            let bytes: Vec<u8> = doc
                .image
                .voxels
                .chunks_exact(3)
                .flat_map(|c| {
                    let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                    [q(c[0]), q(c[1]), q(c[2]), 255]
                })
                .collect();
            upload(queue, &colour, [0; 3], dims, 4, &bytes);
            upload(
                queue,
                &intensity,
                [0; 3],
                one,
                4,
                bytemuck::cast_slice(&[0f32]),
            );
        } else {
            upload(
                queue,
                &intensity,
                [0; 3],
                dims,
                4,
                bytemuck::cast_slice(&doc.image.voxels),
            );
            upload(queue, &colour, [0; 3], one, 4, &[0u8; 4]);
        }
        let labels = texture(device, "labels", dims, wgpu::TextureFormat::R16Uint, d3);
        let lut = texture(
            device,
            "label colours",
            [256, 256, 1],
            wgpu::TextureFormat::Rgba8Unorm,
            wgpu::TextureDimension::D2,
        );
        let proposal = texture(device, "proposal", dims, wgpu::TextureFormat::R16Uint, d3);
        let view = |t: &wgpu::Texture| t.create_view(&wgpu::TextureViewDescriptor::default());
        let (iv, cv, lv, uv) = (view(&intensity), view(&colour), view(&labels), view(&lut));
        let pv = view(&proposal);
        let slots = (0..VIEW_SLOTS)
            .map(|_| {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("view uniforms"),
                    size: std::mem::size_of::<ViewUniforms>() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("slice_view"),
                    layout: &renderer.layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: buffer.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: wgpu::BindingResource::TextureView(&iv),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: wgpu::BindingResource::TextureView(&cv),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: wgpu::BindingResource::TextureView(&lv),
                        },
                        wgpu::BindGroupEntry {
                            binding: 4,
                            resource: wgpu::BindingResource::TextureView(&uv),
                        },
                        wgpu::BindGroupEntry {
                            binding: 5,
                            resource: wgpu::BindingResource::TextureView(&pv),
                        },
                    ],
                });
                (buffer, group)
            })
            .collect();
        let mut gpu = GpuDoc {
            labels,
            proposal,
            proposal_revision: None,
            proposal_key: None,
            lut,
            slots,
            style_revision: None,
            dims,
        };
        doc.labels_reset = true;
        gpu.sync(queue, doc);
        Ok(gpu)
    }

    /// Brings the GPU copy up to date: changed label boxes (or everything after an undo or a
    /// load) and the label colours.
    pub fn sync(&mut self, queue: &wgpu::Queue, doc: &mut Document) {
        let dims = self.dims;
        if std::mem::take(&mut doc.labels_reset) {
            doc.dirty = None;
            upload(
                queue,
                &self.labels,
                [0; 3],
                dims,
                2,
                bytemuck::cast_slice(&doc.labels.labels),
            );
        } else if let Some(b) = doc.dirty.take() {
            let size = [
                b.max[0] - b.min[0],
                b.max[1] - b.min[1],
                b.max[2] - b.min[2],
            ];
            let mut part = Vec::with_capacity(size.iter().product());
            for z in b.min[2]..b.max[2] {
                for y in b.min[1]..b.max[1] {
                    let row = (z * dims[1] + y) * dims[0];
                    part.extend_from_slice(&doc.labels.labels[row + b.min[0]..row + b.max[0]]);
                }
            }
            upload(
                queue,
                &self.labels,
                b.min,
                size,
                2,
                bytemuck::cast_slice(&part),
            );
        }
        if self.proposal_revision != Some(doc.proposal_revision) {
            // Only a new proposal needs its probabilities uploaded; threshold and view changes
            // are uniforms. Without a proposal the layer is switched off by the uniforms too.
            if let Some(r) = &doc.proposal {
                let key = r.id;
                if self.proposal_key != Some(key) {
                    upload(
                        queue,
                        &self.proposal,
                        [0; 3],
                        dims,
                        2,
                        bytemuck::cast_slice(&r.proposal.foreground),
                    );
                    self.proposal_key = Some(key);
                }
            } else {
                self.proposal_key = None;
            }
            self.proposal_revision = Some(doc.proposal_revision);
        }
        if self.style_revision != Some(doc.style_revision) {
            let mut lut = vec![0u8; 256 * 256 * 4];
            for l in &doc.label_info {
                let i = l.id as usize * 4;
                lut[i..i + 3].copy_from_slice(&l.colour);
                lut[i + 3] = if l.visible { 255 } else { 0 };
            }
            upload(queue, &self.lut, [0; 3], [256, 256, 1], 4, &lut);
            self.style_revision = Some(doc.style_revision);
        }
    }

    /// Sets a view slot's uniforms and returns the paint callback drawing it.
    pub fn view_callback(
        &self,
        queue: &wgpu::Queue,
        renderer: &SliceRenderer,
        slot: usize,
        uniforms: &ViewUniforms,
    ) -> SliceCallback {
        let (buffer, group) = &self.slots[slot];
        queue.write_buffer(buffer, 0, bytemuck::bytes_of(uniforms));
        SliceCallback {
            pipeline: renderer.pipeline.clone(),
            group: group.clone(),
        }
    }
}

/// Draws one view inside egui's render pass.
pub struct SliceCallback {
    pipeline: wgpu::RenderPipeline,
    group: wgpu::BindGroup,
}

impl egui_wgpu::CallbackTrait for SliceCallback {
    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        _resources: &egui_wgpu::CallbackResources,
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.draw(0..6, 0..1);
    }
}
