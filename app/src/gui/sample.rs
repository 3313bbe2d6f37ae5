//! The samples built into the binary, so `medseg` opens something real on any machine.

use medseg_data::volume::{load_bytes, load_labels_bytes, LabelMap, Volume};
use medseg_data::Result;
use std::path::Path;

/// A bundled image with its labels and their names.
pub struct Sample {
    pub name: &'static str,
    image: (&'static str, &'static [u8]),
    labels: (&'static str, &'static [u8]),
    pub label_names: &'static [&'static str],
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

pub const SAMPLES: [Sample; 2] = [
    Sample {
        name: "Abdominal CT with 13 organs",
        image: (
            "ct_abdomen.nii.gz",
            include_bytes!("../../../assets/ct_abdomen.nii.gz"),
        ),
        labels: (
            "ct_abdomen_labels.nii.gz",
            include_bytes!("../../../assets/ct_abdomen_labels.nii.gz"),
        ),
        label_names: &ORGANS,
    },
    Sample {
        name: "Dermoscopy with lesion mask",
        image: (
            "dermoscopy_ISIC_0027001.jpg",
            include_bytes!("../../../assets/dermoscopy_ISIC_0027001.jpg"),
        ),
        labels: (
            "dermoscopy_ISIC_0027001_mask.png",
            include_bytes!("../../../assets/dermoscopy_ISIC_0027001_mask.png"),
        ),
        label_names: &["lesion"],
    },
];

impl Sample {
    pub fn load(&self) -> Result<(Volume, LabelMap)> {
        let image = load_bytes(Path::new(self.image.0), self.image.1)?;
        let labels = load_labels_bytes(Path::new(self.labels.0), self.labels.1)?;
        Ok((image, labels))
    }
}
