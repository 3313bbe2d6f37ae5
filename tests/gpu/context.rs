//! GPU context: a device created elsewhere (as the GUI will hand over) runs our kernels.

use crate::gpu;
use burn::backend::wgpu::wgpu;
use medseg_model::gpu::{device_descriptor, list_adapters, pick_adapter, GpuContext};

#[test]
fn context_reports_real_limits() {
    let Some(ctx) = gpu() else { return };
    // lavapipe and every real GPU exceed WebGPU's defaults somewhere; we must see the
    // adapter's own limits, not the defaults.
    assert!(ctx.limits.max_storage_buffer_binding_size >= 128 << 20);
    assert!(ctx.limits.max_storage_buffers_per_shader_stage >= 10);
    assert!(!ctx.adapter.name.is_empty());
}

#[test]
fn a_device_created_outside_runs_the_scan() {
    let Some(_) = gpu() else { return };
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = list_adapters(&instance, medseg_model::gpu::backends_from_env().unwrap());
    let adapter = pick_adapter(adapters, std::env::var("MEDSEG_ADAPTER").ok().as_deref()).unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&device_descriptor(&adapter))).unwrap();
    let ctx = GpuContext::from_wgpu(instance, adapter, device, queue)
        .expect("our own device is accepted");
    medseg_model::gpu::kernel_self_test(&ctx.device).unwrap();
}
