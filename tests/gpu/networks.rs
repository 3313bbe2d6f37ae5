//! Network structure: parameter counts of the published configurations (MODEL-SPEC §A.7).

use crate::{gpu, Lcg};
use medseg_model::fixtures::{tensor, values};
use medseg_model::nn::net::{Net, NetConfig};
use medseg_model::nn::params::{Loader, NamedParams, RandomWeights};
use medseg_model::nn::vm_unet::{BlockKind, VmUnet, VmUnetConfig};
use medseg_model::train::checkpoint;
use medseg_model::train::trainer::EpochReport;

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

/// The paper's SA-UMamba (RSSS blocks in the decoder too, behind `decoder_block`): MODEL-SPEC
/// §A.7's 56,196,937 parameters, RFAConv weights in every decoder stage, and a configuration
/// that keeps its name through a checkpoint's JSON.
#[test]
fn sa_umamba_paper_variant_has_rsss_decoder_blocks() {
    let Some(ctx) = gpu() else { return };
    let mut source = RandomWeights { state: 3 };
    let config = VmUnetConfig::sa_umamba_paper(1);
    assert_eq!(config.decoder_block, BlockKind::Rsss);
    assert_eq!(VmUnetConfig::sa_umamba(1).decoder_block, BlockKind::Vss);
    let mut net = VmUnet::load(
        config.clone(),
        &mut Loader::new(&mut source, ctx.device.clone(), "vmunet"),
    )
    .expect("the paper's SA-UMamba builds");
    assert_eq!(net.param_count(), 56_196_937);
    let mut names = Vec::new();
    net.named_params("", &mut names);
    for stage in 0..4 {
        let prefix = format!("layers_up.{stage}.");
        assert!(
            names
                .iter()
                .any(|(n, _)| n.starts_with(&prefix) && n.contains("conv_blk.cab.0.get_weight")),
            "decoder stage {stage} has no RFAConv"
        );
    }

    let by_name = NetConfig::by_name("sa-umamba-paper", 256).unwrap();
    assert_eq!(by_name, NetConfig::VmUnet(config));
    assert_eq!(by_name.name(), "sa-umamba-paper");
    let back = NetConfig::from_json(Some(by_name.name()), &by_name.to_json()).unwrap();
    assert_eq!(back, by_name);
    assert_eq!(back.name(), "sa-umamba-paper");
    assert_eq!(
        NetConfig::by_name("sa-umamba", 256).unwrap().name(),
        "sa-umamba"
    );
}

/// A checkpoint of the paper's SA-UMamba keeps the BatchNorm running statistics of the RFAConv
/// in its decoder blocks: after a train-mode pass has moved them, a saved and reloaded network
/// has the same statistics, encoder and decoder, and the same eval-mode output.
#[test]
fn paper_variant_checkpoint_keeps_decoder_running_statistics() {
    let Some(ctx) = gpu() else { return };
    let cfg = NetConfig::VmUnet(VmUnetConfig {
        dims: vec![16, 32, 64, 128],
        depths: vec![1; 4],
        depths_decoder: vec![1; 4],
        d_state: 8,
        ..VmUnetConfig::sa_umamba_paper(1)
    });
    let dev = &ctx.device;
    let mut net = Net::load(
        &cfg,
        &mut Loader::new(&mut RandomWeights { state: 5 }, dev.clone(), ""),
    )
    .expect("small paper variant builds");
    let before: Vec<Vec<f64>> = net
        .named_buffers("")
        .into_iter()
        .map(|(_, t)| values(t).unwrap())
        .collect();

    let mut rng = Lcg(11);
    let (b, side) = (2, 64);
    let image = rng.vec(b * 3 * side * side, -1.0, 2.0);
    let mask = rng
        .vec(b * side * side, 0.0, 1.0)
        .iter()
        .map(|v| v.round())
        .collect();
    let x = tensor(image, [b, 3, side, side], dev);
    let m = tensor(mask, [b, 1, side, side], dev);
    let loss = values(net.train_loss(x.clone(), m).unwrap()).unwrap()[0];
    assert!(loss.is_finite(), "loss {loss}");

    // Four statistics (two BatchNorms) per RSSS block: four encoder and four decoder blocks.
    let buffers = net.named_buffers("");
    assert_eq!(buffers.len(), 32);
    for stage in 0..4 {
        let prefix = format!("layers_up.{stage}.blocks.0.conv_blk.cab.0.");
        let n = buffers
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .count();
        assert_eq!(
            n, 4,
            "decoder stage {stage} has {n} running statistics, 4 expected"
        );
    }
    let trained: Vec<(String, Vec<f64>)> = buffers
        .into_iter()
        .map(|(n, t)| (n, values(t).unwrap()))
        .collect();
    for ((name, after), start) in trained.iter().zip(&before) {
        assert_ne!(after, start, "{name} did not move in the train-mode pass");
    }

    let out = std::env::temp_dir().join(format!("medseg-paper-ckpt-{}", std::process::id()));
    let report = EpochReport {
        epoch: 1,
        lr: 1e-3,
        train_loss: loss,
        ..Default::default()
    };
    let train_cfg = medseg_model::train::trainer::TrainConfig::reference(cfg.clone(), 1);
    checkpoint::save(&out, "last", &mut net, &train_cfg, &report).expect("saved");
    let (mut back, _) = checkpoint::load(&out.join("last.json"), dev).expect("reloaded");
    std::fs::remove_dir_all(&out).ok();
    assert_eq!(back.config(), cfg);
    let reloaded: Vec<(String, Vec<f64>)> = back
        .named_buffers("")
        .into_iter()
        .map(|(n, t)| (n, values(t).unwrap()))
        .collect();
    assert_eq!(reloaded, trained);

    let p0 = values(net.foreground(x.clone()).unwrap()).unwrap();
    let p1 = values(back.foreground(x).unwrap()).unwrap();
    let worst = p0
        .iter()
        .zip(&p1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-6, "reloaded network differs by {worst}");
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
        decoder_block: BlockKind::Vss,
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

/// Official weights in, official output out: the `e2e_saumamba_c1` fixture's weights (official
/// names, `vmunet.` prefix, int64 `num_batches_tracked`, the never-called iAFF/DySample modules)
/// written as one safetensors state dict, imported by `load_official`, give the fixture's
/// eval-mode output; the same file is refused by a network it does not fit, and a PyTorch
/// state dict of another model is refused with its names listed.
#[test]
fn official_weights_import_and_mismatches_are_refused() {
    use medseg_model::fixtures::{rel_l2, tensor, values, Fixture};
    use medseg_model::nn::net::NetConfig;
    use medseg_model::train::checkpoint::{load_official, CheckpointError};
    let Some(ctx) = gpu() else { return };
    let f = Fixture::load(&crate::shared_dir().join("fixtures/e2e_saumamba_c1.safetensors"))
        .expect("fixture");
    // The state dict as the official code would save it: param.* and buffer.* under their
    // names, num_batches_tracked as int64.
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, t) in &f.tensors {
        let Some(name) = k.strip_prefix("param.").or(k.strip_prefix("buffer.")) else {
            continue;
        };
        let (dtype, bytes) = if name.ends_with("num_batches_tracked") {
            let v: Vec<u8> = t
                .data
                .iter()
                .flat_map(|&x| (x as i64).to_le_bytes())
                .collect();
            (safetensors::Dtype::I64, v)
        } else {
            let v: Vec<u8> = t
                .data
                .iter()
                .flat_map(|&x| (x as f32).to_le_bytes())
                .collect();
            (safetensors::Dtype::F32, v)
        };
        owned.push((name.to_string(), dtype, t.shape.clone(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("medseg-official-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("official.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();

    let usize_list = |k: &str| -> Vec<usize> {
        f.info[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let cfg = VmUnetConfig {
        dims: usize_list("dims"),
        depths: usize_list("depths"),
        depths_decoder: usize_list("depths_decoder"),
        d_state: f.info["d_state"].as_u64().unwrap() as usize,
        num_classes: 1,
        in_channels: 3,
        encoder_block: BlockKind::Rsss,
        decoder_block: BlockKind::Vss,
    };
    let mut net = load_official(&path, &NetConfig::VmUnet(cfg.clone()), &ctx.device)
        .expect("the official state dict fits its configuration");
    let x = f.get("x").unwrap();
    let xs: [usize; 4] = x.shape.clone().try_into().unwrap();
    let out = net
        .foreground(tensor(x.data.clone(), xs, &ctx.device))
        .unwrap();
    let e = rel_l2(
        &values(out).unwrap(),
        &f.get("before.out_eval").unwrap().data,
    );
    assert!(e <= 1e-4, "imported weights: eval output rel {e:.2e}");

    // The same file into VM-UNet (no RFAConv) or another d_state is refused, naming tensors.
    let vss = VmUnetConfig {
        encoder_block: BlockKind::Vss,
        decoder_block: BlockKind::Vss,
        ..cfg.clone()
    };
    let e = load_official(&path, &NetConfig::VmUnet(vss), &ctx.device).unwrap_err();
    assert!(matches!(e, CheckpointError::Mismatch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("nothing was loaded") && e.contains("conv_blk"),
        "{e}"
    );
    let other = VmUnetConfig { d_state: 8, ..cfg };
    let e = load_official(&path, &NetConfig::VmUnet(other.clone()), &ctx.device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("A_logs") && e.contains("stored"), "{e}");
    // A real PyTorch state dict (two Linear layers) is read and refused by name.
    let pth = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/pth/linear_state_dict.pt");
    let e = load_official(&pth, &NetConfig::VmUnet(other), &ctx.device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("classifier.weight") || e.contains("missing"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
