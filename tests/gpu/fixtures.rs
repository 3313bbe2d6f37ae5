//! The official-code fixtures, through the same code as `medseg check-fixtures`.

use crate::{gpu, shared_dir};
use medseg_model::fixtures::{check_dir, Outcome};

#[test]
fn official_fixtures_pass() {
    let Some(ctx) = gpu() else { return };
    let dir = shared_dir().join("fixtures");
    let report =
        check_dir(&dir, &ctx.device, |f| eprintln!("{}", f.line())).expect("fixtures directory");
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
    let report = check_dir(&tmp, &ctx.device, |_| {}).unwrap();
    assert_eq!(report.checked(), 0);
    assert!(!report.passed());
    // A corrupt file with a known prefix fails with a reason.
    std::fs::write(
        tmp.join("selective_scan_bad.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let report = check_dir(&tmp, &ctx.device, |_| {}).unwrap();
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
    let report = check_dir(&tmp, &ctx.device, |_| {}).unwrap();
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
