//! GPU context: a device created elsewhere (as the GUI will hand over) runs our kernels.

use crate::gpu;
use burn::backend::wgpu::wgpu;
use medseg_model::fixtures::{tensor, values};
use medseg_model::gpu::{device_descriptor, list_adapters, pick_adapter, GpuContext};
use medseg_model::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};

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
    let dev = &ctx.device;
    // y_t = C h_t + D u_t with B = C = 1, A = -inf-ish, D = 0: h_t = delta_t u_t.
    let u = tensor(vec![1.0, 2.0, 3.0], [1, 1, 3, 1], dev);
    let delta = tensor(vec![30.0, 30.0, 30.0], [1, 1, 3, 1], dev);
    let y = selective_scan(
        ScanInput {
            u,
            delta,
            a: tensor(vec![-50.0], [1, 1], dev),
            b: tensor(vec![1.0; 3], [1, 1, 3, 1], dev),
            c: tensor(vec![1.0; 3], [1, 1, 3, 1], dev),
            d: tensor(vec![0.0], [1], dev),
            bias: tensor(vec![0.0], [1], dev),
        },
        ScanOrder::Sequential,
        ScanOptions::default(),
    )
    .unwrap();
    let y = values(y).unwrap();
    for (got, want) in y.iter().zip([30.0, 60.0, 90.0]) {
        assert!((got - want).abs() < 1e-4, "{y:?}");
    }
}
