//! The trained models built into the app (`assets/models/`), each with its model card there.

/// A model shipped inside the binary: a medseg checkpoint (JSON + f16 safetensors).
pub struct BundledModel {
    /// Name on the command line (`medseg predict --model ID`).
    pub id: &'static str,
    /// What it segments, for the model picker.
    pub title: &'static str,
    pub json: &'static [u8],
    pub weights: &'static [u8],
}

/// One entry of [`BUNDLED`]: `assets/models/ID.json` and `ID.safetensors`.
macro_rules! bundled {
    ($id:literal, $title:literal) => {
        BundledModel {
            id: $id,
            title: $title,
            json: include_bytes!(concat!("../../../assets/models/", $id, ".json")),
            weights: include_bytes!(concat!("../../../assets/models/", $id, ".safetensors")),
        }
    };
}

/// The models of `assets/models/README.md` (trained by `medseg train`, packed by
/// `medseg pack-model`).
pub const BUNDLED: &[BundledModel] = &[
    bundled!("polyp-sa-umamba", "Polyp - colonoscopy (SA-UMamba)"),
    bundled!(
        "skin-lesion-sa-umamba",
        "Skin lesion - dermoscopy (SA-UMamba)"
    ),
];
