//! Launching our WGSL kernels on burn's own buffers (CubeCL's raw-source route), shared by
//! every op.

use crate::shaders::{self, ShaderFile};
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim, ExecutionMode};
use burn::tensor::{DType, Shape};

/// Largest number of workgroups along one dispatch dimension (WebGPU's default limit); the
/// kernels loop or split over the rest.
pub const MAX_WORKGROUPS: usize = 65_535;

/// One composed WGSL file as a CubeCL kernel, optionally with one source line replaced
/// (a specialisation such as a head dimension; it is part of the kernel's id).
pub struct Wgsl {
    pub file: &'static ShaderFile,
    pub replace: Option<(&'static str, String)>,
}

impl Wgsl {
    pub fn new(file: &'static ShaderFile) -> Self {
        Wgsl {
            file,
            replace: None,
        }
    }
}

impl KernelSource for Wgsl {
    fn source(&self) -> SourceTemplate {
        let mut text = shaders::compose(self.file);
        if let Some((from, to)) = &self.replace {
            assert!(
                text.contains(from),
                "{}: line to specialise ({from}) not found",
                self.file.name
            );
            text = text.replace(from, to);
        }
        SourceTemplate::new(text)
    }

    fn id(&self) -> KernelId {
        // Unchecked: every loop of our kernels is bounded by construction, and the checked
        // mode makes wgpu add a loop-bounding counter to each of them (hot loops included).
        KernelId::new::<Self>()
            .info((self.file.name, self.replace.clone()))
            .mode(ExecutionMode::Unchecked)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// An uninitialised contiguous f32 tensor on `like`'s device.
pub fn empty(like: &CubeTensor, dims: Vec<usize>) -> CubeTensor {
    let shape = Shape::from(dims);
    let bytes = (shape.num_elements() * DType::F32.size()).max(4);
    let handle = like.client.empty(bytes);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

/// The raw WGSL route runs without bounds checks, so every buffer's size is checked here
/// against what the kernels index.
pub fn expect_len(t: &CubeTensor, len: usize, name: &str) {
    let have = t.meta.shape().num_elements();
    assert_eq!(
        have, len,
        "kernel buffer '{name}' has {have} elements, {len} expected"
    );
}

/// Runs `kernel` with the parameter words as binding 0 and `buffers` as bindings 1, 2, ….
pub fn launch_kernel(
    kernel: Wgsl,
    workgroup: u32,
    count: [usize; 3],
    buffers: &[&CubeTensor],
    params: &[u32],
) {
    let client = &buffers[0].client;
    let params = client.create_from_slice(bytemuck::cast_slice(params));
    let mut bindings = vec![params.binding()];
    bindings.extend(buffers.iter().map(|t| t.handle.clone().binding()));
    client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(workgroup))),
        CubeCount::Static(count[0] as u32, count[1] as u32, count[2] as u32),
        KernelArguments::new().with_buffers(bindings),
    );
}

/// [`launch_kernel`] for an unspecialised file.
pub fn launch(
    file: &'static ShaderFile,
    workgroup: u32,
    count: [usize; 3],
    buffers: &[&CubeTensor],
    params: &[u32],
) {
    launch_kernel(Wgsl::new(file), workgroup, count, buffers, params)
}
