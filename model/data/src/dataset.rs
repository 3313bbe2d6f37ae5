//! Training folders: `images/` with `masks/` (or `labels/`), paired by file stem; deterministic
//! train/validation splits; loading that skips (and counts) what cannot be read.

use crate::error::{DataError, Result};
use crate::preprocess::SeededRng;
use crate::volume::{load, load_mask, LabelMap, MaskOptions, Volume};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "nii", "nii.gz", "dcm",
];

/// File name without its image extension (`a.nii.gz` → `a`), or None for other files.
pub fn image_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS
        .iter()
        .filter(|ext| lower.ends_with(&format!(".{ext}")))
        .map(|ext| name[..name.len() - ext.len() - 1].to_string())
        .max_by_key(|s| std::cmp::Reverse(s.len()))
}

/// Image files of a folder by stem (not recursive; hidden files ignored).
pub fn files_by_stem(dir: &Path) -> Result<(BTreeMap<String, PathBuf>, Vec<PathBuf>)> {
    let mut map = BTreeMap::new();
    let mut other = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in rd {
        let p = entry.map_err(|e| DataError::io(dir, e))?.path();
        if !p.is_file()
            || p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        match image_stem(&p) {
            Some(stem) => {
                if let Some(prev) = map.insert(stem, p.clone()) {
                    other.push(prev);
                }
            }
            None => other.push(p),
        }
    }
    Ok((map, other))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pair {
    pub stem: String,
    pub image: PathBuf,
    pub mask: PathBuf,
}

/// A dataset folder and what did not pair.
#[derive(Clone, Debug, Serialize)]
pub struct Dataset {
    pub root: PathBuf,
    pub pairs: Vec<Pair>,
    pub images_without_mask: Vec<PathBuf>,
    pub masks_without_image: Vec<PathBuf>,
    /// Files that are not images (or duplicate stems), ignored.
    pub ignored: Vec<PathBuf>,
}

impl Dataset {
    /// Scans `root/images` and `root/masks` (else `root/labels`).
    pub fn scan(root: &Path) -> Result<Dataset> {
        Self::scan_with(root, &["masks", "labels"])
    }

    /// Scans `root/images` and the first of `mask_dirs` under `root` that exists (instance
    /// training looks for `labels/` first, where a dataset keeps instance ids beside binary
    /// `masks/`).
    pub fn scan_with(root: &Path, mask_dirs: &[&str]) -> Result<Dataset> {
        let images = root.join("images");
        if !images.is_dir() {
            return Err(DataError::Invalid(format!(
                "{}: a dataset folder needs an images/ folder beside masks/ (or labels/)",
                root.display()
            )));
        }
        let masks = mask_dirs
            .iter()
            .map(|m| root.join(m))
            .find(|p| p.is_dir())
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "{}: no masks/ or labels/ folder beside images/",
                    root.display()
                ))
            })?;
        let (imgs, mut ignored) = files_by_stem(&images)?;
        let (mut msks, ign2) = files_by_stem(&masks)?;
        ignored.extend(ign2);
        let mut pairs = Vec::new();
        let mut images_without_mask = Vec::new();
        for (stem, image) in imgs {
            match msks.remove(&stem) {
                Some(mask) => pairs.push(Pair { stem, image, mask }),
                None => images_without_mask.push(image),
            }
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            pairs,
            images_without_mask,
            masks_without_image: msks.into_values().collect(),
            ignored,
        })
    }

    /// One line per problem, for logs and the GUI.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for p in &self.images_without_mask {
            w.push(format!(
                "{}: no mask with the same name; skipped",
                p.display()
            ));
        }
        for p in &self.masks_without_image {
            w.push(format!(
                "{}: no image with the same name; skipped",
                p.display()
            ));
        }
        for p in &self.ignored {
            w.push(format!(
                "{}: not an image file (or a second file with the same name); ignored",
                p.display()
            ));
        }
        w
    }

    /// Deterministic split: pairs sorted by stem, shuffled by `seed`, the first
    /// round(fraction · n) for validation.
    pub fn split(&self, seed: u64, val_fraction: f64) -> Split {
        let mut pairs = self.pairs.clone();
        pairs.sort_by(|a, b| a.stem.cmp(&b.stem));
        SeededRng::new(seed).shuffle(&mut pairs);
        let n_val = ((pairs.len() as f64) * val_fraction.clamp(0.0, 1.0)).round() as usize;
        let train = pairs.split_off(n_val);
        Split { train, val: pairs }
    }

    /// The split given by a JSON file `{"train": [stems], "val": [stems]}` (e.g.
    /// `polyp/split.json`). Names the file lists that are missing here are an error.
    pub fn split_from_file(&self, path: &Path) -> Result<Split> {
        #[derive(Deserialize)]
        struct SplitFile {
            train: Vec<String>,
            val: Vec<String>,
        }
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let f: SplitFile = serde_json::from_str(&text).map_err(|e| {
            DataError::malformed(
                path,
                "split JSON",
                format!("{e} (expected {{\"train\": [...], \"val\": [...]}})"),
            )
        })?;
        let by_stem: BTreeMap<&str, &Pair> =
            self.pairs.iter().map(|p| (p.stem.as_str(), p)).collect();
        let pick = |names: &[String]| -> Result<Vec<Pair>> {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !by_stem.contains_key(n.as_str()))
                .map(|s| s.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(DataError::Mismatch(format!(
                    "{}: {} listed name(s) have no image/mask pair in {}, e.g. {}",
                    path.display(),
                    missing.len(),
                    self.root.display(),
                    missing
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(names.iter().map(|n| by_stem[n.as_str()].clone()).collect())
        };
        Ok(Split {
            train: pick(&f.train)?,
            val: pick(&f.val)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Split {
    pub train: Vec<Pair>,
    pub val: Vec<Pair>,
}

/// Loads one pair, its mask read by `masks`; the mask must be on the image's grid.
pub fn load_pair(pair: &Pair, masks: &MaskOptions) -> Result<(Volume, LabelMap)> {
    let image = load(&pair.image)?;
    let mask = load_mask(&pair.mask, masks)?;
    if image.geometry.dims != mask.geometry.dims {
        return Err(DataError::Mismatch(format!(
            "{}: mask is {:?} voxels, its image {} is {:?}",
            pair.mask.display(),
            mask.geometry.dims,
            pair.image.display(),
            image.geometry.dims
        )));
    }
    Ok((image, mask))
}

/// A pair as loaded.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub pair: Pair,
    pub image: Volume,
    pub mask: LabelMap,
}

/// Loads every pair it can; the others are returned with their error (skipped, never fatal).
pub fn load_pairs(pairs: &[Pair], masks: &MaskOptions) -> (Vec<Loaded>, Vec<(Pair, DataError)>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for p in pairs {
        match load_pair(p, masks) {
            Ok((image, mask)) => ok.push(Loaded {
                pair: p.clone(),
                image,
                mask,
            }),
            Err(e) => failed.push((p.clone(), e)),
        }
    }
    (ok, failed)
}

/// What a look at some of a dataset's pairs found (the training tab shows it before a run).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Survey {
    /// Pairs looked at (the first `n` by name).
    pub looked_at: usize,
    /// Smallest and largest image size seen, [x, y, z] voxels.
    pub min_dims: [usize; 3],
    pub max_dims: [usize; 3],
    /// Image channel counts seen (1 grey, 3 RGB).
    pub channels: BTreeSet<usize>,
    /// Label values seen in the masks (0 background; a binary mask read from 0/255 is {0, 1}).
    pub labels: BTreeSet<u16>,
    /// Pairs that failed to load, with the reason.
    pub unreadable: Vec<(String, String)>,
}

impl Dataset {
    /// Loads up to `n` pairs (the first by name) and records their sizes, channels and label
    /// values; `keep_going(done, total)` reports progress and can stop early.
    pub fn survey(
        &self,
        n: usize,
        masks: &MaskOptions,
        keep_going: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Survey {
        let mut s = Survey {
            min_dims: [usize::MAX; 3],
            ..Survey::default()
        };
        let pairs = &self.pairs[..n.min(self.pairs.len())];
        for (i, p) in pairs.iter().enumerate() {
            if !keep_going(i, pairs.len()) {
                break;
            }
            match load_pair(p, masks) {
                Ok((image, mask)) => {
                    let d = image.dims();
                    for (k, &n) in d.iter().enumerate() {
                        s.min_dims[k] = s.min_dims[k].min(n);
                        s.max_dims[k] = s.max_dims[k].max(n);
                    }
                    s.channels.insert(image.channels);
                    s.labels.extend(mask.labels.iter().copied());
                }
                Err(e) => s.unreadable.push((p.stem.clone(), e.to_string())),
            }
            s.looked_at += 1;
        }
        if s.looked_at == s.unreadable.len() {
            s.min_dims = [0; 3];
        }
        s
    }
}
