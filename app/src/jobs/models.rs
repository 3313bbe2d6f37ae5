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

pub const BUNDLED: &[BundledModel] = &[];
