//! The samples built into the binary, so `medseg` opens something real on any machine.

use medseg_data::volume::{load_bytes, load_labels_bytes, LabelMap, Volume};
use medseg_data::Result;
use std::path::Path;

/// A bundled image with its labels (if it has any) and their names, and the bundled model that
/// segments it (if any).
pub struct Sample {
    pub name: &'static str,
    image: (&'static str, &'static [u8]),
    labels: Option<(&'static str, &'static [u8])>,
    pub label_names: &'static [&'static str],
    /// Id of a bundled model for this kind of image (`jobs::models::BUNDLED`).
    pub model: Option<&'static str>,
}

/// BTCV / Synapse organ ids 1..=13.
const ORGANS: [&str; 13] = [
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic vein",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
];

pub const SAMPLES: [Sample; 3] = [
    Sample {
        name: "Abdominal CT with 13 organs",
        image: (
            "ct_abdomen.nii.gz",
            include_bytes!("../../../assets/ct_abdomen.nii.gz"),
        ),
        labels: Some((
            "ct_abdomen_labels.nii.gz",
            include_bytes!("../../../assets/ct_abdomen_labels.nii.gz"),
        )),
        label_names: &ORGANS,
        model: None,
    },
    Sample {
        name: "Dermoscopy with lesion mask",
        image: (
            "dermoscopy_ISIC_0027001.jpg",
            include_bytes!("../../../assets/dermoscopy_ISIC_0027001.jpg"),
        ),
        labels: Some((
            "dermoscopy_ISIC_0027001_mask.png",
            include_bytes!("../../../assets/dermoscopy_ISIC_0027001_mask.png"),
        )),
        label_names: &["lesion"],
        model: Some("skin-lesion-sa-umamba"),
    },
    Sample {
        name: "Colonoscopy frame with a polyp",
        image: (
            "polyp_kvasir_cju0t4oil7vzk099370nun5h9.jpg",
            include_bytes!("../../../assets/polyp_kvasir_cju0t4oil7vzk099370nun5h9.jpg"),
        ),
        labels: None,
        label_names: &[],
        model: Some("polyp-sa-umamba"),
    },
];

impl Sample {
    pub fn load(&self) -> Result<(Volume, Option<LabelMap>)> {
        let image = load_bytes(Path::new(self.image.0), self.image.1)?;
        let labels = match self.labels {
            Some((name, bytes)) => Some(load_labels_bytes(Path::new(name), bytes)?),
            None => None,
        };
        Ok((image, labels))
    }
}
