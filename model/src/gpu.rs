//! Choosing a GPU, creating its device with the adapter's real limits, and handing it to burn.
//!
//! Environment:
//! - `MEDSEG_BACKEND`: `vulkan`, `metal`, `dx12`, `gl`, `webgpu` or `all` (default: the
//!   platform's primary APIs, like wgpu's `Backends::PRIMARY`).
//! - `MEDSEG_ADAPTER`: a number (index in `medseg gpu-info`'s list) or a case-insensitive part
//!   of the adapter's name.

use crate::error::GpuError;
use burn::backend::wgpu::{wgpu, WgpuSetup};
use burn::tensor::Device;

/// Limits our kernels care about, copied from the device that was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLimits {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

impl KernelLimits {
    pub fn from_wgpu(limits: &wgpu::Limits) -> Self {
        Self {
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        }
    }

    /// What every medseg kernel needs at least (the scan's backward binds 10 buffers, uses
    /// 256 invocations and 8 KiB of workgroup memory).
    pub const REQUIRED: KernelLimits = KernelLimits {
        max_storage_buffer_binding_size: 16 << 20,
        max_buffer_size: 16 << 20,
        max_storage_buffers_per_shader_stage: 10,
        max_compute_workgroup_storage_size: 16 << 10,
        max_compute_invocations_per_workgroup: 256,
        max_compute_workgroups_per_dimension: 65_535,
    };

    /// Check these limits against `need`; the first shortfall becomes a typed error.
    pub fn check(&self, need: &KernelLimits, adapter: &str, job: &str) -> Result<(), GpuError> {
        let rows: [(&'static str, u64, u64); 6] = [
            (
                "max_storage_buffer_binding_size",
                self.max_storage_buffer_binding_size,
                need.max_storage_buffer_binding_size,
            ),
            (
                "max_buffer_size",
                self.max_buffer_size,
                need.max_buffer_size,
            ),
            (
                "max_storage_buffers_per_shader_stage",
                self.max_storage_buffers_per_shader_stage as u64,
                need.max_storage_buffers_per_shader_stage as u64,
            ),
            (
                "max_compute_workgroup_storage_size",
                self.max_compute_workgroup_storage_size as u64,
                need.max_compute_workgroup_storage_size as u64,
            ),
            (
                "max_compute_invocations_per_workgroup",
                self.max_compute_invocations_per_workgroup as u64,
                need.max_compute_invocations_per_workgroup as u64,
            ),
            (
                "max_compute_workgroups_per_dimension",
                self.max_compute_workgroups_per_dimension as u64,
                need.max_compute_workgroups_per_dimension as u64,
            ),
        ];
        for (limit, have, need) in rows {
            if have < need {
                return Err(GpuError::LimitTooSmall {
                    adapter: adapter.to_string(),
                    job: job.to_string(),
                    limit,
                    have,
                    need,
                });
            }
        }
        Ok(())
    }
}

/// A description of the adapter behind a [`GpuContext`].
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device_id: u32,
    pub subgroups: bool,
    pub shader_f16: bool,
    pub timestamp_query: bool,
}

impl AdapterSummary {
    /// A CPU software rasteriser (Mesa's llvmpipe/lavapipe, WARP), not a GPU.
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }

    fn new(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device_id: info.device,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

/// A GPU that burn computes on, with what we know about it.
#[derive(Clone)]
pub struct GpuContext {
    /// The burn device (wgpu runtime) that tensors are created on.
    pub device: Device,
    pub adapter: AdapterSummary,
    pub limits: KernelLimits,
    /// The wgpu handles, shared with whoever else draws or computes on this device.
    pub wgpu_device: wgpu::Device,
    pub wgpu_queue: wgpu::Queue,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Parse `MEDSEG_BACKEND`.
pub fn backends_from_env() -> Result<wgpu::Backends, GpuError> {
    match std::env::var("MEDSEG_BACKEND") {
        Ok(v) if !v.trim().is_empty() => parse_backends(&v),
        _ => Ok(wgpu::Backends::PRIMARY | wgpu::Backends::GL),
    }
}

fn parse_backends(value: &str) -> Result<wgpu::Backends, GpuError> {
    let mut out = wgpu::Backends::empty();
    for part in value.split(',') {
        out |= match part.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "webgpu" | "browser" => wgpu::Backends::BROWSER_WEBGPU,
            "all" => wgpu::Backends::all(),
            other => return Err(GpuError::UnknownBackend(other.to_string())),
        };
    }
    Ok(out)
}

#[cfg(not(target_arch = "wasm32"))]
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 1,
        _ => 2,
    }
}

/// Adapters in order of preference: discrete before integrated before software, native
/// APIs before GL, then by name so that the order is stable.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            type_rank(info.device_type),
            backend_rank(info.backend),
            info.name.clone(),
        )
    });
    adapters
}

/// Pick an adapter from a sorted list by `MEDSEG_ADAPTER` (index or name part), else the first.
pub fn pick_adapter(
    adapters: Vec<wgpu::Adapter>,
    filter: Option<&str>,
) -> Result<wgpu::Adapter, GpuError> {
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let hint = if names.is_empty() {
        "install a GPU driver, or Mesa's software Vulkan (Debian: apt-get install mesa-vulkan-drivers)"
            .to_string()
    } else {
        format!("available: {}", names.join(", "))
    };
    let mut adapters = adapters;
    match filter.map(str::trim).filter(|f| !f.is_empty()) {
        None => {
            if adapters.is_empty() {
                Err(GpuError::NoAdapter {
                    filter: String::new(),
                    hint,
                })
            } else {
                Ok(adapters.remove(0))
            }
        }
        Some(f) => {
            let pos = match f.parse::<usize>() {
                Ok(i) if i < adapters.len() => Some(i),
                _ => {
                    let needle = f.to_ascii_lowercase();
                    adapters
                        .iter()
                        .position(|a| a.get_info().name.to_ascii_lowercase().contains(&needle))
                }
            };
            match pos {
                Some(i) => Ok(adapters.remove(i)),
                None => Err(GpuError::NoAdapter {
                    filter: format!(" matching MEDSEG_ADAPTER='{f}'"),
                    hint,
                }),
            }
        }
    }
}

/// The device descriptor medseg asks every adapter for: all its features and all its limits,
/// not WebGPU's defaults — except mappable primary buffers (they slow ordinary buffers down
/// on discrete GPUs) and wgpu's experimental features (a device asking for those is refused
/// unless experimental features are switched on, as NVIDIA's driver showed). The GUI uses
/// the same descriptor for the device it creates.
pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("medseg"),
        required_features: adapter
            .features()
            .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
            .difference(wgpu::Features::all_experimental_mask()),
        required_limits: adapter.limits(),
        memory_hints: wgpu::MemoryHints::MemoryUsage,
        trace: wgpu::Trace::Off,
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
    }
}

impl GpuContext {
    /// Find an adapter (see the module docs for the environment variables), create its
    /// device and start burn on it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn create() -> Result<Self, GpuError> {
        let backends = backends_from_env()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = list_adapters(&instance, backends);
        let filter = std::env::var("MEDSEG_ADAPTER").ok();
        let adapter = pick_adapter(adapters, filter.as_deref())?;
        let name = adapter.get_info().name;
        let (device, queue) = pollster::block_on(
            adapter.request_device(&device_descriptor(&adapter)),
        )
        .map_err(|e| GpuError::RequestDevice {
            adapter: name.clone(),
            message: e.to_string(),
        })?;
        Self::from_wgpu(instance, adapter, device, queue)
    }

    /// Start burn on a device that someone else created (the GUI hands over eframe's).
    /// The device should have been requested with [`device_descriptor`]; its limits are
    /// checked against what medseg's kernels need.
    pub fn from_wgpu(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Self, GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        use_kernel_cache();
        let info = adapter.get_info();
        let summary = AdapterSummary::new(&info, device.features());
        let limits = KernelLimits::from_wgpu(&device.limits());
        limits.check(&KernelLimits::REQUIRED, &info.name, "medseg's kernels")?;
        let setup = WgpuSetup {
            instance,
            adapter,
            device: device.clone(),
            queue: queue.clone(),
            backend: info.backend,
        };
        let burn_device =
            Device::wgpu_options()
                .setup(setup)
                .init()
                .map_err(|e| GpuError::Runtime {
                    adapter: info.name.clone(),
                    message: e.to_string(),
                })?;
        set_binding_limit(limits.max_storage_buffer_binding_size);
        SOFTWARE.store(summary.is_software(), std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            device: burn_device,
            adapter: summary,
            limits,
            wgpu_device: device,
            wgpu_queue: queue,
        })
    }

    /// The burn device with autodiff enabled, for training.
    pub fn autodiff_device(&self) -> Device {
        self.device.clone().autodiff()
    }
}

/// Where compiled kernels and autotune results are kept between runs, so only the first run on
/// a machine pays for compiling and tuning: `MEDSEG_KERNEL_CACHE` (a folder, or `off`), else
/// `medseg/kernels` under the user's cache folder (`$XDG_CACHE_HOME`, else `~/.cache`). None
/// when caching is off or no folder can be found.
#[cfg(not(target_arch = "wasm32"))]
pub fn kernel_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match std::env::var("MEDSEG_KERNEL_CACHE") {
        Ok(v) if v == "off" || v == "0" => return None,
        Ok(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from))?;
    Some(base.join("medseg").join("kernels"))
}

/// Points the compute runtime's persistent caches (compiled kernels, autotune results) at
/// [`kernel_cache_dir`], keeping any `cubecl.toml` / `CUBECL_*` settings; with the cache off
/// the runtime's configuration is left alone. Must run before the runtime reads its
/// configuration (the first device); later calls change nothing. Returns the folder in use.
#[cfg(not(target_arch = "wasm32"))]
pub fn use_kernel_cache() -> Option<std::path::PathBuf> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    // Off: the runtime keeps its own defaults (nothing compiled is kept between runs).
    let dir = kernel_cache_dir().filter(|d| std::fs::create_dir_all(d).is_ok())?;
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.environment.path = CacheConfig::Directory(dir.clone());
    config.compilation.cache = true;
    CubeClRuntimeConfig::try_set(config);
    Some(dir)
}

static BINDING_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(128 << 20);

fn set_binding_limit(bytes: u64) {
    BINDING_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

static SOFTWARE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the last device created runs on a CPU (lavapipe, WARP) rather than a GPU.
pub fn on_software_adapter() -> bool {
    SOFTWARE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The text a caught panic carried: the GPU runtime reports out-of-memory and device loss by
/// panicking, and callers turn that into an error naming it.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "an internal error without a message".into())
}

/// Whether a GPU runtime failure (a panic's text) says the work was too large for the device:
/// out of memory, a buffer over the device's limit, or a dispatch over its workgroup count —
/// all cured by a smaller batch or input.
pub fn is_too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "out of device memory",
        "outofmemory",
        "out of memory",
        "can't allocate buffer",
        "cube count too big",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// The line of a GPU runtime failure that says what went wrong: the root cause the runtime
/// names (the last line of the block after "Caused by:", which may first say which queued work
/// the failure took down) when there is one, else the first line.
pub fn failure_summary(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    let first = lines.iter().find(|l| !l.is_empty());
    let cause = lines.iter().position(|l| *l == "Caused by:").and_then(|i| {
        lines[i + 1..]
            .iter()
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty())
            .last()
    });
    cause
        .or(first)
        .map_or("the GPU runtime failed", |l| l)
        .to_string()
}

/// Largest storage binding (bytes) any created device allows; ops split work above it.
/// WebGPU's default (128 MiB) until a context has been created.
pub fn binding_limit() -> u64 {
    BINDING_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs a three-position selective scan whose answer is known (B = C = 1, a strongly decaying
/// A, D = 0, so y_t = Δ_t u_t = 30, 60, 90) on `device`: proof that our WGSL kernels compile
/// and run there. `medseg gpu-info` reports it; the app can check a device it was handed.
/// Waits for the GPU; in the browser use [`kernel_self_test_async`].
pub fn kernel_self_test(device: &Device) -> Result<(), String> {
    pollster::block_on(kernel_self_test_async(device))
}

/// [`kernel_self_test`] without blocking (the browser).
pub async fn kernel_self_test_async(device: &Device) -> Result<(), String> {
    use crate::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};
    use crate::tensors::{tensor, values_async};
    let y = selective_scan(
        ScanInput {
            u: tensor(vec![1.0, 2.0, 3.0], [1, 1, 3, 1], device),
            delta: tensor(vec![30.0; 3], [1, 1, 3, 1], device),
            a: tensor(vec![-50.0], [1, 1], device),
            b: tensor(vec![1.0; 3], [1, 1, 3, 1], device),
            c: tensor(vec![1.0; 3], [1, 1, 3, 1], device),
            d: tensor(vec![0.0], [1], device),
            bias: tensor(vec![0.0], [1], device),
        },
        ScanOrder::Sequential,
        ScanOptions::default(),
    )
    .map_err(|e| format!("the selective-scan kernel failed: {e}"))?;
    let y = values_async(y).await?;
    if y.len() == 3
        && y.iter()
            .zip([30.0, 60.0, 90.0])
            .all(|(got, want)| (got - want).abs() < 1e-4)
    {
        Ok(())
    } else {
        Err(format!(
            "the selective-scan kernel gave {y:?} instead of [30, 60, 90]"
        ))
    }
}

/// Whether tests must fail instead of skip when no adapter is found.
pub fn gpu_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("MEDSEG_REQUIRE_GPU").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
        assert_eq!(
            parse_backends("Vulkan, gl").unwrap(),
            wgpu::Backends::VULKAN | wgpu::Backends::GL
        );
        assert!(matches!(
            parse_backends("cuda"),
            Err(GpuError::UnknownBackend(name)) if name == "cuda"
        ));
    }

    #[test]
    fn limit_shortfall_names_the_limit() {
        let mut small = KernelLimits::REQUIRED;
        small.max_storage_buffers_per_shader_stage = 8;
        let err = small
            .check(&KernelLimits::REQUIRED, "tiny gpu", "the scan")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_storage_buffers_per_shader_stage is 8, 10 needed"),
            "{err}"
        );
        assert!(err.contains("tiny gpu"), "{err}");
    }

    #[test]
    fn runtime_failures_too_large_for_the_device_are_told_apart() {
        // As the runtime words them (the dispatch one as lavapipe gave it at batch 32, 512²).
        let dispatch = "Error while reading data: use `try_into_data` instead to catch the \
                        error at runtime: An error happened during execution\nCaused by:\n\
                        Unable to launch matmul because a required feature is unavailable: \
                        Cube count too big (65536, 2, 1)\n\n";
        assert!(is_too_large(dispatch));
        assert_eq!(
            failure_summary(dispatch),
            "Unable to launch matmul because a required feature is unavailable: Cube count \
             too big (65536, 2, 1)"
        );
        // As the H100 gave it at batch 1024, 256²: the skipped work first, the cause last.
        let queued = "Error while reading data: use `try_into_data` instead to catch the \
                      error at runtime: An error happened during execution\nCaused by:\n  \
                      the work writing it was skipped 418 operation(s) below a failure: \
                      Should run when selected by autotune.: matmul_naive: An unknown error \
                      happened.\nUnable to launch matmul because a required feature is \
                      unavailable: Cube count too big (69760, 48, 1)\n\n";
        assert!(is_too_large(queued));
        assert_eq!(
            failure_summary(queued),
            "Unable to launch matmul because a required feature is unavailable: Cube count \
             too big (69760, 48, 1)"
        );
        let oom = "out of device memory allocating 1073741824 bytes\n   0: backtrace";
        assert!(is_too_large(oom));
        assert_eq!(
            failure_summary(oom),
            "out of device memory allocating 1073741824 bytes"
        );
        let lost = "Device lost: the GPU stopped answering";
        assert!(!is_too_large(lost));
        assert_eq!(failure_summary(lost), lost);
    }

    #[test]
    fn no_adapter_is_a_clear_error() {
        let err = pick_adapter(Vec::new(), None).unwrap_err().to_string();
        assert!(err.contains("no GPU adapter found"), "{err}");
        assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    }
}
