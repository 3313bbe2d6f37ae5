//! `medseg bench scan`: the selective scan at SA-UMamba's stage shapes against a
//! device-to-device copy measured in the same run, and against the official CUDA kernel's
//! H100 figures (shared/docs/BASELINE.md).

use crate::gpu::GpuContext;
use crate::ops::scan::{scan_backward_raw, scan_forward_raw, ScanInput, ScanOptions, ScanOrder};
use burn::backend::wgpu::wgpu;
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;
use std::time::Instant;

/// The official mamba CUDA kernel on an H100, fp32, batch 16 (BASELINE.md): (forward ms,
/// forward+backward ms) per stage.
pub const CUDA_H100_MS: [(f64, f64); 4] = [(1.69, 5.95), (0.82, 2.98), (0.35, 1.47), (0.45, 1.53)];

#[derive(Debug, Clone, Serialize)]
pub struct ScanBenchRow {
    pub stage: usize,
    pub batch: usize,
    pub channels: usize,
    pub len: usize,
    pub states: usize,
    pub fwd_ms: f64,
    pub fwd_bwd_ms: f64,
    pub fwd_mb: f64,
    pub fwd_bwd_mb: f64,
    pub fwd_gb_s: f64,
    pub fwd_bwd_gb_s: f64,
    pub fwd_of_copy: f64,
    pub fwd_bwd_of_copy: f64,
    /// CUDA-kernel time / ours (> 1: we are faster); only meaningful on an H100 at batch 16.
    pub fwd_speedup_vs_cuda_h100: f64,
    pub fwd_bwd_speedup_vs_cuda_h100: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanBench {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub copy_gb_s: f64,
    pub iterations: usize,
    pub rows: Vec<ScanBenchRow>,
}

/// Device-to-device copy bandwidth (read + write counted) in GB/s: the better of the
/// API's buffer copy and our WGSL copy kernel (shaders/copy.wgsl).
pub fn copy_bandwidth(ctx: &GpuContext, iters: usize) -> f64 {
    // 256 MiB on a GPU; 16 MiB on a software adapter, where this is only a smoke test.
    let want: u64 = if ctx.adapter.device_type == "Cpu" {
        16 << 20
    } else {
        256 << 20
    };
    let bytes = want.min((ctx.limits.max_storage_buffer_binding_size / 2) & !15);
    let make = |label| {
        ctx.wgpu_device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (make("copy-src"), make("copy-dst"));
    let dev = &ctx.wgpu_device;
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("copy"),
        source: wgpu::ShaderSource::Wgsl(crate::shaders::COPY.source.into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("copy"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = |src: &wgpu::Buffer, dst: &wgpu::Buffer| {
        dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: dst.as_entire_binding(),
                },
            ],
        })
    };
    let groups = [bind(&a, &b), bind(&b, &a)];
    let workgroups = ((bytes / 16).div_ceil(256) as u32).min(65_535);
    let run = |n: usize, kernel: bool| {
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        for i in 0..n {
            if kernel {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &groups[i % 2], &[]);
                pass.dispatch_workgroups(workgroups, 1, 1);
            } else if i % 2 == 0 {
                enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
            } else {
                enc.copy_buffer_to_buffer(&b, 0, &a, 0, bytes);
            }
        }
        ctx.wgpu_queue.submit([enc.finish()]);
        let _ = dev.poll(wgpu::PollType::wait_indefinitely());
    };
    let mut best = 0.0f64;
    for kernel in [false, true] {
        run(iters, kernel);
        for _ in 0..3 {
            let t = Instant::now();
            run(iters, kernel);
            best = best.max(2.0 * bytes as f64 * iters as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    best
}

fn time_ms(ctx: &GpuContext, iters: usize, mut f: impl FnMut()) -> Result<f64, String> {
    f();
    ctx.device
        .sync()
        .map_err(|e| format!("device error: {e:?}"))?;
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    ctx.device
        .sync()
        .map_err(|e| format!("device error: {e:?}"))?;
    Ok(t.elapsed().as_secs_f64() * 1e3 / iters as f64)
}

/// Time forward and forward+backward for the given SA-UMamba stages (1..=4) at `batch`.
/// `group_chunks` forces the work split (0: automatic), as [`ScanOptions::group_chunks`].
pub fn bench_scan(
    ctx: &GpuContext,
    batch: usize,
    iters: usize,
    stages: &[usize],
    group_chunks: usize,
) -> Result<ScanBench, String> {
    let dev = &ctx.device;
    let copy = copy_bandwidth(ctx, iters.max(20));
    let mut rows = Vec::new();
    for &stage in stages {
        if !(1..=4).contains(&stage) {
            return Err(format!("stage {stage}: SA-UMamba has stages 1 to 4"));
        }
        let side = 64 >> (stage - 1);
        let len = side * side;
        let d = 192 << (stage - 1);
        let (k, n) = (4, 16);
        let normal = |shape: [usize; 4], m: f64, s: f64| {
            Tensor::<4>::random(shape, Distribution::Normal(m, s), dev)
        };
        let input = ScanInput {
            u: normal([batch, k, len, d], 0.0, 1.0),
            delta: normal([batch, k, len, d], -3.0, 1.0),
            a: Tensor::<2>::random([k * d, n], Distribution::Uniform(-16.0, -1.0), dev),
            b: normal([batch, k, len, n], 0.0, 1.0),
            c: normal([batch, k, len, n], 0.0, 1.0),
            d: Tensor::<1>::ones([k * d], dev),
            bias: Tensor::<1>::random([k * d], Distribution::Uniform(-4.0, -2.0), dev),
        };
        let dy = normal([batch, k, len, d], 0.0, 1.0);
        let order = ScanOrder::Sequential;
        let opts = ScanOptions {
            group_chunks,
            ..Default::default()
        };
        // Shapes are checked once; the timed loops launch kernels only.
        scan_forward_raw(&input, order, opts).map_err(|e| e.to_string())?;
        let fwd_ms = time_ms(ctx, iters, || {
            let _ = scan_forward_raw(&input, order, opts);
        })?;
        let fwd_bwd_ms = time_ms(ctx, iters, || {
            if let Ok((_, ckpt)) = scan_forward_raw(&input, order, opts) {
                let _ = scan_backward_raw(&input, ckpt, dy.clone(), order, opts);
            }
        })?;
        // Minimal traffic as BASELINE.md counts it: every input read once, every output
        // written once (f32).
        let seq = (batch * k * d * len) as f64 * 4.0;
        let st = (batch * k * n * len) as f64 * 4.0;
        let par = (k * d * (n + 2)) as f64 * 4.0;
        let fwd_bytes = 2.0 * seq + 2.0 * st + par + seq;
        let bwd_bytes = 3.0 * seq + 2.0 * st + par + 2.0 * seq + 2.0 * st + par;
        let (cf, cb) = CUDA_H100_MS[stage - 1];
        let gbs = |bytes: f64, ms: f64| bytes / (ms * 1e-3) / 1e9;
        let fwd_gb_s = gbs(fwd_bytes, fwd_ms);
        let fwd_bwd_gb_s = gbs(fwd_bytes + bwd_bytes, fwd_bwd_ms);
        rows.push(ScanBenchRow {
            stage,
            batch,
            channels: k * d,
            len,
            states: n,
            fwd_ms,
            fwd_bwd_ms,
            fwd_mb: fwd_bytes / 1e6,
            fwd_bwd_mb: (fwd_bytes + bwd_bytes) / 1e6,
            fwd_gb_s,
            fwd_bwd_gb_s,
            fwd_of_copy: fwd_gb_s / copy,
            fwd_bwd_of_copy: fwd_bwd_gb_s / copy,
            fwd_speedup_vs_cuda_h100: cf / fwd_ms,
            fwd_bwd_speedup_vs_cuda_h100: cb / fwd_bwd_ms,
        });
    }
    Ok(ScanBench {
        adapter: ctx.adapter.name.clone(),
        backend: ctx.adapter.backend.clone(),
        driver: format!("{} {}", ctx.adapter.driver, ctx.adapter.driver_info),
        copy_gb_s: copy,
        iterations: iters,
        rows,
    })
}

impl ScanBench {
    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({}, {}); device-to-device copy: {:.0} GB/s; {} iterations\n\n",
            self.adapter, self.backend, self.driver, self.copy_gb_s, self.iterations
        );
        s += "| stage | batch | K·D | L | fwd ms | fwd GB/s | fwd % copy | fwd vs CUDA H100 | fwd+bwd ms | fwd+bwd GB/s | fwd+bwd % copy | fwd+bwd vs CUDA H100 |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {:.3} | {:.0} | {:.1} % | {:.2}× | {:.3} | {:.0} | {:.1} % | {:.2}× |\n",
                r.stage,
                r.batch,
                r.channels,
                r.len,
                r.fwd_ms,
                r.fwd_gb_s,
                100.0 * r.fwd_of_copy,
                r.fwd_speedup_vs_cuda_h100,
                r.fwd_bwd_ms,
                r.fwd_bwd_gb_s,
                100.0 * r.fwd_bwd_of_copy,
                r.fwd_bwd_speedup_vs_cuda_h100
            );
        }
        s
    }
}

/// The official code on an H100 (BASELINE.md): (name, inference img/s at batch 16, training
/// img/s at batch 8 — forward, backward and AdamW step).
pub const MODEL_BASELINE_H100: [(&str, f64, f64); 2] =
    [("sa-umamba", 353.0, 88.0), ("vm-unet", 468.0, 115.0)];

#[derive(Debug, Clone, Serialize)]
pub struct ModelBenchRow {
    pub model: String,
    /// "inference" (eval mode, no autodiff) or "train step" (train mode, the network's loss,
    /// backward and the AdamW update).
    pub mode: String,
    pub batch: usize,
    pub median_ms: f64,
    pub img_s: f64,
    /// The official code's figure on an H100 for the same row, where BASELINE.md has one.
    pub baseline_img_s: Option<f64>,
    pub ratio_to_baseline: Option<f64>,
    /// Device memory the allocator held after these runs (GiB), having been emptied before them.
    /// The pool keeps its pages, so this is its high-water mark for the row (≥ the bytes in use
    /// at the peak). None when the backend reports no pool.
    pub reserved_gib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub size: usize,
    pub iterations: usize,
    pub rows: Vec<ModelBenchRow>,
}

fn median_ms(
    ctx: &GpuContext,
    iters: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let sync = || {
        ctx.device
            .sync()
            .map_err(|e| format!("device error: {e:?}"))
    };
    // Two warm-up runs (pipeline compilation, allocator growth).
    for _ in 0..2 {
        f()?;
        sync()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        sync()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Whole networks (the configurations `medseg train` uses, random weights, `size`² inputs):
/// inference latency at batch 1, inference throughput at batch 16, training steps (forward,
/// backward, AdamW) at batch 8.
pub fn bench_model(
    ctx: &GpuContext,
    models: &[String],
    size: usize,
    iters: usize,
) -> Result<ModelBench, String> {
    use crate::nn::net::{Net, NetConfig};
    use crate::nn::params::{Loader, RandomWeights};
    use crate::train::{adamw::AdamW, optim::GpuAdamW};
    let mut rows = Vec::new();
    for name in models {
        let config = NetConfig::by_name(name, size)?;
        if !size.is_multiple_of(config.stride()) {
            return Err(format!(
                "{name} needs a size that is a multiple of {}",
                config.stride()
            ));
        }
        // The official figures are for 256² inputs only.
        let baseline = MODEL_BASELINE_H100
            .iter()
            .find(|b| b.0 == name && size == 256);
        let reserved = |dev: &burn::tensor::Device| {
            dev.memory_pool_usage()
                .map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64)
        };
        let mut row = |mode: &str, batch: usize, ms: f64, base: Option<f64>, gib: Option<f64>| {
            let img_s = batch as f64 / (ms * 1e-3);
            rows.push(ModelBenchRow {
                model: name.clone(),
                mode: mode.to_string(),
                batch,
                median_ms: ms,
                img_s,
                baseline_img_s: base,
                ratio_to_baseline: base.map(|b| img_s / b),
                reserved_gib: gib,
            });
        };
        let dev = ctx.device.clone();
        let mut net = Net::load(
            &config,
            &mut Loader::new(&mut RandomWeights { state: 1 }, dev.clone(), ""),
        )?;
        for batch in [1, 16] {
            let x =
                Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &dev);
            dev.memory_cleanup();
            let ms = median_ms(ctx, iters, || net.foreground(x.clone()).map(|_| ()))?;
            let base = if batch == 16 {
                baseline.map(|b| b.1)
            } else {
                None
            };
            row("inference", batch, ms, base, reserved(&dev));
        }
        drop(net);
        let ad = ctx.device.clone().autodiff();
        let mut net = Net::load(
            &config,
            &mut Loader::new(&mut RandomWeights { state: 1 }, ad.clone(), ""),
        )?;
        let mut opt = GpuAdamW::new(AdamW::official());
        let batch = 8;
        let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &ad);
        let target =
            Tensor::<4>::random([batch, 1, size, size], Distribution::Uniform(0.0, 1.0), &ad)
                .round();
        ad.memory_cleanup();
        let ms = median_ms(ctx, iters, || {
            let grads = net.train_loss(x.clone(), target.clone())?.backward();
            opt.step(&mut net, &grads, 1e-3);
            Ok(())
        })?;
        row(
            "train step",
            batch,
            ms,
            baseline.map(|b| b.2),
            reserved(&ad),
        );
    }
    Ok(ModelBench {
        adapter: ctx.adapter.name.clone(),
        backend: ctx.adapter.backend.clone(),
        driver: format!("{} {}", ctx.adapter.driver, ctx.adapter.driver_info),
        size,
        iterations: iters,
        rows,
    })
}

impl ModelBench {
    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({}, {}); input {}²; median of {} runs\n\n| model | mode | batch | median ms | img/s | official H100 img/s | ratio | pool GiB |\n|---|---|---|---|---|---|---|---|\n",
            self.adapter, self.backend, self.driver, self.size, self.iterations
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {:.2} | {:.1} | {} | {} | {} |\n",
                r.model,
                r.mode,
                r.batch,
                r.median_ms,
                r.img_s,
                r.baseline_img_s
                    .map(|b| format!("{b:.0}"))
                    .unwrap_or_else(|| "—".into()),
                r.ratio_to_baseline
                    .map(|x| format!("{x:.2}×"))
                    .unwrap_or_else(|| "—".into()),
                r.reserved_gib
                    .map(|g| format!("{g:.2}"))
                    .unwrap_or_else(|| "—".into())
            );
        }
        s
    }
}

/// One convolution layer of the networks, timed with our kernels and with burn's.
#[derive(Debug, Clone, Serialize)]
pub struct ConvBenchRow {
    pub layer: String,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub size: usize,
    pub k: usize,
    pub groups: usize,
    /// Forward multiply-adds × 2, in GFLOP (a forward + backward step is about 3×).
    pub fwd_gflop: f64,
    /// "dense" / "depthwise" (our kernels) or "burn" (shapes ours do not take).
    pub route: String,
    pub ours_fwd_ms: f64,
    pub ours_fwd_bwd_ms: f64,
    pub ours_fwd_bwd_tflop_s: f64,
    /// burn's own convolution on the same inputs (None when not asked for).
    pub burn_fwd_ms: Option<f64>,
    pub burn_fwd_bwd_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvBench {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub iterations: usize,
    pub rows: Vec<ConvBenchRow>,
}

/// The convolution layers the benchmark times: (name, Cin, Cout, side, K, groups).
pub const CONV_LAYERS: [(&str, usize, usize, usize, usize, usize); 11] = [
    ("USEMA 3×3 stage 1", 32, 32, 256, 3, 1),
    ("USEMA 3×3 decoder 1 (after the skip)", 64, 32, 256, 3, 1),
    ("USEMA 3×3 stage 2", 64, 64, 128, 3, 1),
    ("USEMA 3×3 stage 3", 128, 128, 64, 3, 1),
    ("USEMA 3×3 stage 4", 256, 256, 32, 3, 1),
    ("USEMA 3×3 stage 5", 512, 512, 16, 3, 1),
    ("USEMA depthwise 3×3 stage 1", 32, 32, 256, 3, 32),
    ("SS2D depthwise 3×3 stage 1 (E = 192)", 192, 192, 64, 3, 192),
    ("RFAConv features 3×3 ×9 stage 1", 96, 864, 64, 3, 96),
    ("RFAConv 1×1 stage 1", 864, 96, 64, 1, 1),
    ("VM-UNet last 1×1", 24, 1, 256, 1, 1),
];

/// Forward and forward + backward of each of [`CONV_LAYERS`] at `batch`, with our kernels
/// (`ops::conv::conv2d`) and, when `with_burn`, with burn's `conv2d` on the same inputs.
pub fn bench_conv(
    ctx: &GpuContext,
    batch: usize,
    iters: usize,
    with_burn: bool,
) -> Result<ConvBench, String> {
    use crate::ops::conv::{conv2d_with, route, ConvImpl, ConvRoute};
    use burn::tensor::ops::ConvOptions;
    let ad = ctx.device.clone().autodiff();
    let mut rows = Vec::new();
    for (name, cin, cout, size, k, groups) in CONV_LAYERS {
        let options = ConvOptions::new([1, 1], [k / 2; 2], [1, 1], groups);
        let x = Tensor::<4>::random([batch, cin, size, size], Distribution::Default, &ad);
        let w = Tensor::<4>::random([cout, cin / groups, k, k], Distribution::Default, &ad);
        let b = Tensor::<1>::random([cout], Distribution::Default, &ad);
        let dy = Tensor::<4>::random([batch, cout, size, size], Distribution::Default, &ad);
        let time = |which: ConvImpl| -> Result<(f64, f64), String> {
            let conv = |x, w, b| conv2d_with(x, w, Some(b), options.clone(), which);
            let fwd = time_ms(ctx, iters, || {
                let _ = conv(x.clone(), w.clone(), b.clone());
            })?;
            let (x, w, b) = (
                x.clone().require_grad(),
                w.clone().require_grad(),
                b.clone().require_grad(),
            );
            let fwd_bwd = time_ms(ctx, iters, || {
                let y = conv(x.clone(), w.clone(), b.clone());
                let grads = (y * dy.clone()).sum().backward();
                let _ = (x.grad(&grads), w.grad(&grads), b.grad(&grads));
            })?;
            Ok((fwd, fwd_bwd))
        };
        let (ours_fwd_ms, ours_fwd_bwd_ms) = time(ConvImpl::Ours)?;
        let (burn_fwd_ms, burn_fwd_bwd_ms) = if with_burn {
            let (f, fb) = time(ConvImpl::Burn)?;
            (Some(f), Some(fb))
        } else {
            (None, None)
        };
        let fwd_gflop = 2.0 * (batch * cout * size * size * (cin / groups) * k * k) as f64 / 1e9;
        let r = match route(
            &[batch, cin, size, size],
            &[cout, cin / groups, k, k],
            &options,
        ) {
            ConvRoute::Dense(_) => "dense",
            ConvRoute::Depthwise(_) => "depthwise",
            ConvRoute::Burn => "burn",
        };
        rows.push(ConvBenchRow {
            layer: name.to_string(),
            batch,
            cin,
            cout,
            size,
            k,
            groups,
            fwd_gflop,
            route: r.to_string(),
            ours_fwd_ms,
            ours_fwd_bwd_ms,
            ours_fwd_bwd_tflop_s: 3.0 * fwd_gflop / ours_fwd_bwd_ms,
            burn_fwd_ms,
            burn_fwd_bwd_ms,
        });
    }
    Ok(ConvBench {
        adapter: ctx.adapter.name.clone(),
        backend: ctx.adapter.backend.clone(),
        driver: format!("{} {}", ctx.adapter.driver, ctx.adapter.driver_info),
        iterations: iters,
        rows,
    })
}

impl ConvBench {
    /// A Markdown table.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
        let mut s = format!(
            "adapter: {} ({}, {}); mean of {} runs after one\n\n| layer | B, Cin→Cout, side, K, groups | GFLOP fwd | route | ours fwd ms | ours fwd+bwd ms | TFLOP/s fwd+bwd | burn fwd ms | burn fwd+bwd ms |\n|---|---|---|---|---|---|---|---|---|\n",
            self.adapter, self.backend, self.driver, self.iterations
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {}, {}→{}, {}², {}, {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                r.layer,
                r.batch,
                r.cin,
                r.cout,
                r.size,
                r.k,
                r.groups,
                r.fwd_gflop,
                r.route,
                r.ours_fwd_ms,
                r.ours_fwd_bwd_ms,
                r.ours_fwd_bwd_tflop_s,
                ms(r.burn_fwd_ms),
                ms(r.burn_fwd_bwd_ms)
            );
        }
        s
    }
}
