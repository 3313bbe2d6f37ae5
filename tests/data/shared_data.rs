//! Every image, mask and label file of ../shared/data loads, and masks match their images.

use crate::shared_data;
use medseg_data::dataset::Dataset;
use medseg_data::{load, load_labels};
use std::path::Path;

fn folders(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.join("images").is_dir() {
            out.push(p);
        } else if p.is_dir() {
            out.extend(folders(&p));
        }
    }
    out
}

#[test]
fn every_file_of_shared_data_loads() {
    let root = shared_data();
    let sets = folders(&root);
    assert!(sets.len() >= 9, "{sets:?}");
    let mut files = 0;
    let mut problems = Vec::new();
    for set in sets {
        let d = Dataset::scan(&set).unwrap();
        assert!(
            d.images_without_mask.is_empty() && d.masks_without_image.is_empty(),
            "{}: {:?}",
            set.display(),
            d.warnings()
        );
        for pair in &d.pairs {
            let image = match load(&pair.image) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            files += 1;
            for sub in ["masks", "labels", "labels_totalseg"] {
                let dir = set.join(sub);
                if !dir.is_dir() {
                    continue;
                }
                let name = pair
                    .image
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let stem = medseg_data::dataset::image_stem(&pair.image).unwrap();
                let candidates = [
                    dir.join(&name),
                    dir.join(format!("{stem}.png")),
                    dir.join(format!("{stem}.nii.gz")),
                ];
                let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                    continue;
                };
                files += 1;
                match load_labels(path) {
                    Ok(m) if m.geometry.dims != image.geometry.dims => problems.push(format!(
                        "{}: {:?} vs image {:?}",
                        path.display(),
                        m.geometry.dims,
                        image.geometry.dims
                    )),
                    Ok(m) if m.max_label() == 0 => {
                        problems.push(format!("{}: empty mask", path.display()))
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(files > 3700, "{files} files");
}
