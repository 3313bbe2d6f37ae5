//! Network structure: parameter counts of the published configurations (MODEL-SPEC §A.7).

use crate::gpu;
use medseg_model::nn::params::{Loader, NamedParams, RandomWeights};
use medseg_model::nn::vm_unet::{BlockKind, VmUnet, VmUnetConfig};

#[test]
fn vm_unet_has_the_published_parameter_count() {
    let Some(ctx) = gpu() else { return };
    for (classes, want) in [(1, 27_427_561), (9, 27_427_561 + 200)] {
        let mut source = RandomWeights { state: 1 };
        let mut net = VmUnet::load(
            VmUnetConfig::paper(classes),
            &mut Loader::new(&mut source, ctx.device.clone(), "vmunet"),
        )
        .expect("paper configuration builds");
        assert_eq!(net.param_count(), want, "{classes} classes");
        let mut names = Vec::new();
        net.named_params("vmunet", &mut names);
        assert!(names
            .iter()
            .any(|(n, _)| n == "vmunet.layers_up.3.blocks.0.self_attention.A_logs"));
        assert!(names
            .iter()
            .any(|(n, _)| n == "vmunet.final_up.expand.weight"));
    }
}

/// SA-UMamba as released: 41,859,241 live parameters (the dead iAFF/DySample modules of the
/// official code are not built).
#[test]
fn sa_umamba_has_the_published_parameter_count() {
    let Some(ctx) = gpu() else { return };
    let mut source = RandomWeights { state: 3 };
    let mut net = VmUnet::load(
        VmUnetConfig::sa_umamba(1),
        &mut Loader::new(&mut source, ctx.device.clone(), "vmunet"),
    )
    .expect("SA-UMamba builds");
    assert_eq!(net.param_count(), 41_859_241);
}

#[test]
fn vm_unet_refuses_sizes_it_cannot_take() {
    let Some(ctx) = gpu() else { return };
    let cfg = VmUnetConfig {
        dims: vec![8, 16, 32, 64],
        depths: vec![1; 4],
        depths_decoder: vec![1; 4],
        d_state: 16,
        num_classes: 1,
        in_channels: 3,
        encoder_block: BlockKind::Vss,
    };
    let mut net = VmUnet::load(
        cfg,
        &mut Loader::new(&mut RandomWeights { state: 2 }, ctx.device.clone(), ""),
    )
    .unwrap();
    let x = burn::tensor::Tensor::<4>::zeros([1, 3, 48, 64], &ctx.device);
    let err = net.forward(x, false).unwrap_err();
    assert!(err.contains("multiples of 32"), "{err}");
}
