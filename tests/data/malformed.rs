//! Every file of tests/data/malformed gives an error naming the problem: no panic, no huge
//! allocation. EXPECTED.tsv lists the loader to use and a fragment the message must contain.

use crate::corpus_dir;
use medseg_data::{load, load_labels, volume::load_bytes};

#[test]
fn every_malformed_file_gives_a_clear_error() {
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
