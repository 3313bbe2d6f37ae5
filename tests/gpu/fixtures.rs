//! The official-code fixtures, through the same code as `medseg check-fixtures`.

use crate::{gpu, shared_dir};
use medseg_model::fixtures::Outcome;
use medseg_model::parity::check_dir;

#[test]
fn official_fixtures_pass() {
    let Some(ctx) = gpu() else { return };
    let dir = shared_dir().join("fixtures");
    let report = check_dir(&dir, &ctx.device, ctx.adapter.is_software(), |f| {
        eprintln!("{}", f.line())
    })
    .expect("fixtures directory");
    let checked: Vec<&str> = report
        .files
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Checked(_)))
        .map(|f| f.file.as_str())
        .collect();
    for want in [
        "selective_scan_tiny.safetensors",
        "selective_scan_medium.safetensors",
        "selective_scan_L4096.safetensors",
        "selective_scan_L4999.safetensors",
        "ss2d.safetensors",
        "e2e_vmunet_c1.safetensors",
        "e2e_saumamba_c1.safetensors",
        "e2e_saumamba_c4.safetensors",
        "rfaconv.safetensors",
        "rsss_block.safetensors",
    ] {
        assert!(
            checked.contains(&want),
            "{want} was not checked: {checked:?}"
        );
    }
    let failed: Vec<String> = report
        .files
        .iter()
        .filter(|f| !f.passed())
        .map(|f| f.line())
        .collect();
    assert!(
        failed.is_empty(),
        "fixtures over tolerance:\n{}",
        failed.join("\n")
    );
    assert!(report.passed());
}

#[test]
fn unreadable_and_missing_fixtures_fail() {
    let Some(ctx) = gpu() else { return };
    let tmp = std::env::temp_dir().join(format!("medseg-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // Nothing with a known prefix: not a pass.
    std::fs::write(tmp.join("zzz_unknown.safetensors"), b"whatever").unwrap();
    let report = check_dir(&tmp, &ctx.device, ctx.adapter.is_software(), |_| {}).unwrap();
    assert_eq!(report.checked(), 0);
    assert!(!report.passed());
    // A corrupt file with a known prefix fails with a reason.
    std::fs::write(
        tmp.join("selective_scan_bad.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let report = check_dir(&tmp, &ctx.device, ctx.adapter.is_software(), |_| {}).unwrap();
    assert!(!report.passed());
    let bad = report
        .files
        .iter()
        .find(|f| f.file == "selective_scan_bad.safetensors")
        .unwrap();
    assert!(
        matches!(&bad.outcome, Outcome::Unreadable(e) if e.contains("safetensors")),
        "{:?}",
        bad.outcome
    );
    // A readable file that lacks a tensor is named.
    let st = safetensors_with(&[("u", vec![1, 8, 7])]);
    std::fs::write(tmp.join("selective_scan_bad.safetensors"), st).unwrap();
    let report = check_dir(&tmp, &ctx.device, ctx.adapter.is_software(), |_| {}).unwrap();
    let bad = report
        .files
        .iter()
        .find(|f| f.file == "selective_scan_bad.safetensors")
        .unwrap();
    assert!(
        matches!(&bad.outcome, Outcome::Unreadable(e) if e.contains("'B'")),
        "{:?}",
        bad.outcome
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

fn safetensors_with(tensors: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        data.extend(std::iter::repeat_n(0u8, 4 * n));
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The f64 RFAConv twin reproduces the official forward and every gradient in eval and train
/// mode, and the BatchNorm running statistics after the train-mode pass. CPU only.
#[test]
fn rfaconv_twin_matches_the_official_code() {
    use medseg_model::fixtures::{rel_l2, Fixture};
    use medseg_model::reference::rfaconv::{BatchNorm, BnMode, RfaConv};
    let f =
        Fixture::load(&shared_dir().join("fixtures/rfaconv.safetensors")).expect("rfaconv fixture");
    let v = |name: &str| f.get(name).unwrap().data.clone();
    let bn = |prefix: &str| BatchNorm {
        weight: v(&format!("param.{prefix}.weight")),
        bias: v(&format!("param.{prefix}.bias")),
        running_mean: v(&format!("buffer.{prefix}.running_mean")),
        running_var: v(&format!("buffer.{prefix}.running_var")),
    };
    let x = f.get("x").unwrap();
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let net = RfaConv {
        channels: c,
        alpha: v("param.get_weight.1.weight"),
        beta: v("param.generate_feature.0.weight"),
        bn_feature: bn("generate_feature.1"),
        conv_weight: v("param.conv.0.weight"),
        conv_bias: v("param.conv.0.bias"),
        bn_out: bn("conv.1"),
    };
    let dy = v("dy");
    for (mode, tag) in [(BnMode::Eval, "eval"), (BnMode::Train, "train")] {
        let mut run = net.clone();
        let (out, trace) = run.forward_trace(&x.data, b, h, w, mode);
        let e = rel_l2(&out, &v(&format!("{tag}.out")));
        assert!(e < 1e-6, "{tag}.out rel {e:.2e}");
        let g = net.backward(&trace, &dy);
        for (ours, name) in [
            (&g.x, "x"),
            (&g.alpha, "get_weight.1.weight"),
            (&g.beta, "generate_feature.0.weight"),
            (&g.bn_feature_weight, "generate_feature.1.weight"),
            (&g.bn_feature_bias, "generate_feature.1.bias"),
            (&g.conv_weight, "conv.0.weight"),
            (&g.conv_bias, "conv.0.bias"),
            (&g.bn_out_weight, "conv.1.weight"),
            (&g.bn_out_bias, "conv.1.bias"),
        ] {
            let reference = v(&format!("{tag}.grad.{name}"));
            if mode == BnMode::Train && name == "conv.0.bias" {
                // Feeds a batch-statistics BatchNorm: structurally zero.
                let worst = ours
                    .iter()
                    .chain(&reference)
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                assert!(
                    worst < 1e-6,
                    "{tag}.grad.{name} should be zero: {worst:.2e}"
                );
            } else {
                let e = rel_l2(ours, &reference);
                assert!(e < 1e-6, "{tag}.grad.{name} rel {e:.2e}");
            }
        }
    }
    let mut trained = net.clone();
    trained.forward(&x.data, b, h, w, BnMode::Train);
    for (ours, name) in [
        (
            &trained.bn_feature.running_mean,
            "generate_feature.1.running_mean",
        ),
        (
            &trained.bn_feature.running_var,
            "generate_feature.1.running_var",
        ),
        (&trained.bn_out.running_mean, "conv.1.running_mean"),
        (&trained.bn_out.running_var, "conv.1.running_var"),
    ] {
        let e = rel_l2(ours, &v(&format!("train.buffer_after.{name}")));
        assert!(e < 1e-6, "{name} rel {e:.2e}");
    }
}
