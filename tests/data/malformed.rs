//! Every file of tests/data/malformed gives an error naming the problem: no panic, no huge
//! allocation. EXPECTED.tsv lists the loader to use and a fragment the message must contain.
//! The corpus is read under a 64 MiB memory budget, so its decompression bombs stay small.

use crate::corpus_dir;
use medseg_data::budget::with_budget;
use medseg_data::{load, load_labels, load_mask, volume::load_bytes, MaskOptions};

#[test]
fn every_malformed_file_gives_a_clear_error() {
    with_budget(64 << 20, check_the_corpus);
}

/// A `.dcm` that is a link to a device is refused before anything is read.
#[cfg(unix)]
#[test]
fn a_link_to_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["zero.dcm", "zero.png", "zero.nii"] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = load(&link)
            .expect_err("a device is not an image")
            .to_string();
        assert!(e.contains("not a regular file") && e.contains(name), "{e}");
        let e = load_labels(&link).expect_err("nor a mask").to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}

fn check_the_corpus() {
    let dir = corpus_dir();
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 3, "bad EXPECTED.tsv line {line:?}");
        let (name, loader, expected) = (cols[0], cols[1], cols[2]);
        listed.insert(name.to_string());
        let path = dir.join(name);
        let result = match loader {
            "image" => load(&path).map(|_| ()),
            "labels" => load_labels(&path).map(|_| ()),
            "mask" => load_mask(&path, &MaskOptions::default()).map(|_| ()),
            other => panic!("unknown loader {other} for {name}"),
        };
        match result {
            Ok(()) => failures.push(format!("{name}: loaded without error")),
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(expected) {
                    failures.push(format!(
                        "{name}: error {msg:?} does not mention {expected:?}"
                    ));
                }
                if !msg.contains(name) {
                    failures.push(format!("{name}: error {msg:?} does not name the file"));
                }
            }
        }
        // The in-memory entry point (browser, fuzzing) must fail too, never panic.
        if loader == "image" {
            let bytes = std::fs::read(&path).expect("corpus file");
            if load_bytes(&path, &bytes).is_ok() {
                failures.push(format!("{name}: load_bytes accepted it"));
            }
        }
        checked += 1;
    }
    // Every file in the folder is listed, so none is silently untested.
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name != "EXPECTED.tsv" && !listed.contains(&name) {
            failures.push(format!("{name}: in the corpus but not in EXPECTED.tsv"));
        }
    }
    assert!(checked >= 30, "only {checked} malformed files");
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
