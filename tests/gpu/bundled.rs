//! The trained models in `assets/models/`: each one, loaded from its f16 weights as the app
//! loads it, gives on its validation images the pooled DSC its model card (the JSON's
//! `epoch.val_dsc`, measured by `medseg train` in f32 on the training GPU) states. The polyp
//! model's 241 validation frames take over ten minutes on lavapipe, so by default it is held
//! to a floor on the first 12 of them; `MEDSEG_FULL_CHECKS=1` checks all 241 against the card.

use crate::{gpu, shared_dir};
use medseg_data::dataset::{load_pairs, Dataset};
use medseg_data::MaskOptions;
use medseg_model::segment::SegModel;
use medseg_model::train::trainer::{pooled_dsc, prepare};
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models")
}

/// Pooled validation DSC of bundled model `id` on `data` (its split file, else the seeded 80/20
/// split `medseg train` used), against the card; `tol` covers f16 weights and, for a data set
/// stored at another resolution than the one trained on, resampling differences.
/// With `first`, only that many validation images, held to `floor` alone.
fn check(id: &str, data: &Path, first: Option<usize>, tol: f64, floor: f64) {
    let Some(ctx) = gpu() else { return };
    let dir = models_dir();
    let json = std::fs::read(dir.join(format!("{id}.json"))).unwrap();
    let weights = std::fs::read(dir.join(format!("{id}.safetensors"))).unwrap();
    let card: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        card["weights_dtype"], "f16",
        "bundled weights are packed as f16"
    );
    let stated = card["epoch"]["val_dsc"]
        .as_f64()
        .expect("the card states a val DSC");
    let seed = card["train"]["seed"].as_u64().unwrap();
    let mut model = SegModel::from_bytes(id, &json, &weights, &ctx.device).unwrap();
    assert_eq!(model.input.classes.len(), 2);

    let ds = Dataset::scan(data).unwrap();
    let split_file = data.join("split.json");
    let split = if split_file.exists() {
        ds.split_from_file(&split_file).unwrap()
    } else {
        ds.split(seed, 0.2)
    };
    let val_pairs = &split.val[..first.unwrap_or(usize::MAX).min(split.val.len())];
    let (loaded, bad) = load_pairs(val_pairs, &MaskOptions::default());
    assert!(bad.is_empty(), "{bad:?}");
    let val = prepare(&loaded, model.input.size, 2, model.input.normalization).unwrap();
    let dsc = pooled_dsc(&mut model.net, &val, 4).unwrap();
    eprintln!(
        "{id}: pooled val DSC {dsc:.4} on {} images; the card says {stated:.4}",
        val.len()
    );
    assert!(
        first.is_some() || (dsc - stated).abs() <= tol,
        "{id}: DSC {dsc:.4} here, {stated:.4} on the card"
    );
    assert!(dsc >= floor, "{id}: DSC {dsc:.4} below {floor}");
}

/// The polyp model on the validation frames of the reference split (the files it was
/// validated on): all 241 with `MEDSEG_FULL_CHECKS=1`, else the first 12 against a floor
/// (0.6992 on lavapipe).
#[test]
fn the_bundled_polyp_model_scores_what_its_card_says() {
    let full = std::env::var_os("MEDSEG_FULL_CHECKS").is_some_and(|v| v == "1");
    check(
        "polyp-sa-umamba",
        &shared_dir().join("data/polyp"),
        (!full).then_some(12),
        0.005,
        0.65,
    );
}

/// The skin-lesion model on its 22 validation photos. It was trained and validated on copies
/// halved to 512 px wide; here the shared set's 1024 px files are resized straight to 256²,
/// so a few boundary pixels differ: hence the wider tolerance.
#[test]
fn the_bundled_skin_lesion_model_scores_what_its_card_says() {
    check(
        "skin-lesion-sa-umamba",
        &shared_dir().join("data/dermoscopy"),
        None,
        0.02,
        0.8,
    );
}
