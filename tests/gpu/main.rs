//! GPU test binary (one binary: burn + wgpu link once). Runs on Mesa lavapipe in CI; with `CI`
//! or `MEDSEG_REQUIRE_GPU` set, a missing adapter fails the tests instead of skipping them.

mod bundled;
mod context;
mod conv;
mod fixtures;
mod infer;
mod networks;
mod rfa;
mod scan;
mod sema;
mod shaders;
mod train;
mod usema;

use medseg_model::gpu::{gpu_required, GpuContext};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The shared GPU context, or `None` (with a note) when there is no adapter and no one
/// requires one.
pub fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| match GpuContext::create() {
        Ok(ctx) => {
            eprintln!(
                "GPU tests run on {} ({})",
                ctx.adapter.name, ctx.adapter.backend
            );
            Some(ctx)
        }
        Err(e) => {
            if gpu_required() {
                panic!("no usable GPU adapter and CI/MEDSEG_REQUIRE_GPU is set: {e}");
            }
            eprintln!("SKIPPING GPU test: {e} (set MEDSEG_REQUIRE_GPU=1 to make this a failure)");
            None
        }
    });
    if ctx.is_none() && gpu_required() {
        panic!("no usable GPU adapter and CI/MEDSEG_REQUIRE_GPU is set");
    }
    ctx.as_ref()
}

/// `../shared` beside the checkout.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Deterministic pseudo-random numbers in [-1, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, offset: f64, scale: f64) -> Vec<f64> {
        (0..n).map(|_| offset + scale * self.uniform()).collect()
    }
}

/// Trains `net` from its start by `cfg` (checkpoints in `out`), printing each epoch's report.
pub fn train_logged(
    net: &mut medseg_model::nn::net::Net,
    cfg: &medseg_model::train::trainer::TrainConfig,
    train: &[medseg_data::preprocess::Sample],
    val: &[medseg_data::preprocess::Sample],
    out: &std::path::Path,
) -> medseg_model::train::trainer::TrainSummary {
    use medseg_model::train::trainer::{self, Event, TrainState};
    let mut state = TrainState::new(cfg);
    trainer::train(net, cfg, &mut state, train, val, Some(out), &mut |e| {
        if let Event::Epoch(r) = e {
            eprintln!("{r:?}");
        }
        true
    })
    .unwrap()
}
