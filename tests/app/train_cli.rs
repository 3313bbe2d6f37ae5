//! `medseg train` as a process: killed with SIGKILL ten times at random moments and resumed
//! each time, then stopped with Ctrl+C (which saves and exits 0) and resumed, it ends with the
//! weights of a run never interrupted;
//! an output folder that cannot be written is refused before anything starts.

use crate::harness::tiny_polyp;
use medseg_model::train::checkpoint::{read_meta, read_tensors};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("medseg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `medseg train` of a tiny VM-UNet (width 16, 32²) on `data` into `out`; the kernel cache in
/// `cache` makes every start after the first one quick.
fn tiny_vm_unet(data: &Path, out: &Path, cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medseg"));
    c.args([
        "train", "--model", "vm-unet", "--width", "16", "--size", "32",
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .env("MEDSEG_KERNEL_CACHE", cache)
    .stdin(Stdio::null());
    c
}

/// A tiny run on `data`: 6 training and 2 validation frames, batch 2 (3 steps an epoch).
fn train(data: &Path, out: &Path, cache: &Path, epochs: usize, resume: bool) -> Command {
    let mut c = tiny_vm_unet(data, out, cache);
    c.args(["--batch", "2", "--val-fraction", "0.25", "--epochs"])
        .arg(epochs.to_string());
    if resume {
        c.arg("--resume");
    }
    c
}

/// A scratch folder with an empty dataset (images/, masks/) in it: (folder, dataset).
fn empty_dataset(name: &str) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    let data = root.join("data");
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
    }
    (root, data)
}

/// Runs `c` to its end; its stderr, after checking that it succeeded.
fn succeeds(mut c: Command) -> String {
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    stderr
}

fn count(out: &Path, event: &str) -> usize {
    let needle = format!("\"event\":\"{event}\"");
    std::fs::read_to_string(out.join("log.jsonl"))
        .map(|s| s.lines().filter(|l| l.contains(&needle)).count())
        .unwrap_or(0)
}

/// Every checkpoint in `out` reads: the JSON parses and names weights that load.
fn checkpoints_read(out: &Path) {
    for name in ["state", "best", "last"] {
        let json = out.join(format!("{name}.json"));
        if !json.exists() {
            assert_ne!(name, "state", "no state.json after an epoch was logged");
            continue;
        }
        let meta = read_meta(&json).unwrap_or_else(|e| panic!("{name}.json unreadable: {e}"));
        let weights = meta["weights"]
            .as_str()
            .map(String::from)
            .unwrap_or(format!("{name}.safetensors"));
        read_tensors(&out.join(&weights))
            .unwrap_or_else(|e| panic!("{weights} (named by {name}.json) unreadable: {e}"));
    }
}

fn run_to_end(mut c: Command, what: &str) {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn wait_for(child: &mut Child, secs: u64, what: &str, done: impl Fn() -> bool) -> bool {
    let t0 = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what}: the run failed ({status})");
            return false;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Ctrl+C a resumed run once it has logged two steps: it finishes the step, saves the state
/// there (mid-epoch) and exits 0.
#[cfg(unix)]
fn ctrl_c(data: &Path, out: &Path, cache: &Path, epochs: usize) {
    let before = count(out, "step");
    let mut child = train(data, out, cache, epochs, true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(
        &mut child,
        600,
        "steps after a restart",
        || count(out, "step") >= before + 2
    ));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}: {stderr}", o.status);
    assert!(stderr.contains("continue with --resume"), "{stderr}");
    let state = read_meta(&out.join("state.json")).unwrap();
    let (epoch, step) = (
        state["next_epoch"].as_u64().unwrap(),
        state["next_step"].as_u64().unwrap(),
    );
    // 3 steps an epoch; the log holds every step of the run, restarts included, so its last
    // step line is where the state continues.
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let last: serde_json::Value = log
        .lines()
        .rev()
        .find(|l| l.contains("\"event\":\"step\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let (le, ls) = (
        last["epoch"].as_u64().unwrap(),
        last["step"].as_u64().unwrap(),
    );
    assert_eq!(
        (epoch * 3 + step),
        (le - 1) * 3 + ls,
        "saved where the logged steps end"
    );
    checkpoints_read(out);
}

/// Ten SIGKILLs at random moments, each followed by `--resume`, then a Ctrl+C mid-epoch and
/// a last resume: every checkpoint reads at every point, and the weights at the end are the
/// uninterrupted run's.
#[test]
fn killed_ten_times_at_random_moments_the_run_ends_as_if_never_interrupted() {
    if !crate::harness::adapter_present() {
        return;
    }
    let root = scratch("train-kill");
    let (data, cache) = (root.join("data"), root.join("kernels"));
    tiny_polyp(&data, 8);
    let epochs = 13;

    // The reference: one uninterrupted run (it also fills the kernel cache).
    let whole = root.join("whole");
    run_to_end(
        train(&data, &whole, &cache, epochs, false),
        "uninterrupted run",
    );

    let out = root.join("killed");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut kills = 0;
    let mut resume = false;
    while kills < 10 {
        let before = count(&out, "epoch");
        let mut child = train(&data, &out, &cache, epochs, resume)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Once this process has finished an epoch (so every attempt gets further), kill it
        // 0–400 ms later: in a step, in validation or while it writes checkpoints.
        let alive = wait_for(&mut child, 600, "an epoch after a restart", || {
            count(&out, "epoch") > before
        });
        assert!(
            alive,
            "the run finished after {kills} kills; give it more epochs"
        );
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((rng >> 33) % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        checkpoints_read(&out);
        resume = true;
    }
    eprintln!("{kills}/10 kills resumed");
    #[cfg(unix)]
    ctrl_c(&data, &out, &cache, epochs);
    run_to_end(train(&data, &out, &cache, epochs, true), "the last resume");

    let a = read_tensors(&whole.join("last.safetensors")).unwrap();
    let b = read_tensors(&out.join("last.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    for (name, (shape, va)) in &a {
        let (shape_b, vb) = &b[name];
        assert_eq!(shape, shape_b, "{name}");
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("largest weight difference to the uninterrupted run: {worst:e}");
    assert_eq!(worst, 0.0, "the resumed run's weights differ");
    let history = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("history.json")).unwrap()).unwrap()
    };
    // Each epoch's mean loss and validation DSC as the uninterrupted run logged them (the
    // resumed run reads the earlier epochs back from JSON, so allow a decimal round trip).
    let (hw, ho) = (history(&whole), history(&out));
    let (ew, eo) = (
        hw["epochs"].as_array().unwrap(),
        ho["epochs"].as_array().unwrap(),
    );
    assert_eq!(ew.len(), epochs);
    assert_eq!(eo.len(), epochs);
    for (a, b) in ew.iter().zip(eo) {
        for k in ["train_loss", "val_dsc"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "epoch {}: {k} {x} vs {y}",
                a["epoch"]
            );
        }
    }
}

#[test]
fn an_output_folder_that_cannot_be_written_is_refused_before_training() {
    let root = scratch("train-readonly");
    let data = root.join("data");
    tiny_polyp(&data, 8);
    std::fs::write(root.join("a-file"), b"not a folder").unwrap();
    let mut expected = vec!["a-file", "data"];
    // Under a regular file: it cannot be created, whoever runs the test.
    let mut cases = vec![root.join("a-file").join("run")];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A read-only folder (root ignores permissions, so only where it does not run as root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let ro = root.join("read-only");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            cases.push(ro);
            expected.push("read-only");
        }
        cases.push(PathBuf::from("/proc/self/medseg-run"));
    }
    let cache = root.join("kernels");
    for out in cases {
        let o = train(&data, &out, &cache, 1, false).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{}: {stderr}", out.display());
        assert!(
            stderr.contains(&format!("--out {}", out.display())),
            "{}: {stderr}",
            out.display()
        );
        assert!(
            !cache.exists(),
            "the GPU was started before the folder was checked"
        );
    }
    let mut left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, expected, "nothing is written elsewhere");
}

/// Pairs that cannot be trained on — a volume among 2-D images, an image with NaN pixels, an MR
/// slice passed as a mask — are each skipped with the reason; with nothing left the run stops
/// before training.
#[test]
fn unusable_pairs_are_skipped_and_listed() {
    use medseg_data::geometry::Geometry;
    use medseg_data::nifti::{self, DataType, NiftiHeader};
    let (root, data) = empty_dataset("train-unusable");
    let image = |name: &str, dims: [usize; 3], value: f64| {
        let g = Geometry::axis_aligned(dims, [1.0; 3]);
        let h = NiftiHeader::for_geometry(&g, DataType::F32);
        let n = dims.iter().product::<usize>();
        let mut v: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
        v[n / 2] = value;
        nifti::write_samples(
            &data.join("images").join(name),
            &h,
            &v,
            DataType::F32,
            false,
        )
        .unwrap();
    };
    let mask = |name: &str, dims: [usize; 3], labels: &dyn Fn(usize) -> u16| {
        let mut m = medseg_data::LabelMap::new(Geometry::axis_aligned(dims, [1.0; 3]));
        for (i, l) in m.labels.iter_mut().enumerate() {
            *l = labels(i);
        }
        medseg_data::save_labels(&data.join("masks").join(name), &m, false).unwrap();
    };
    image("volume.nii", [32, 32, 4], 1.0);
    mask("volume.nii", [32, 32, 4], &|i| (i % 3 == 0) as u16);
    image("nan.nii", [32, 32, 1], f64::NAN);
    mask("nan.png", [32, 32, 1], &|i| (i % 3 == 0) as u16);
    image("mr.nii", [32, 32, 1], 1.0);
    mask("mr.png", [32, 32, 1], &|i| i as u16 * 60);
    image("inf.nii", [32, 32, 1], f64::INFINITY);
    mask("inf.png", [32, 32, 1], &|i| (i % 2) as u16);
    let out = root.join("run");
    // Three pairs train and one validates (--val-fraction 0.25).
    let o = train(&data, &out, &root.join("kernels"), 1, false)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    for (stem, why) in [
        ("volume", "a volume in a dataset of 2-D images"),
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("mr", "1023 distinct label values"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("skipped {stem}:")) && l.contains(why)),
            "{stem} not listed as skipped for {why:?}:\n{stderr}"
        );
    }
    assert!(stderr.contains("none of the 3 training pairs"), "{stderr}");
}

/// Label maps of two foreground classes (a classes.json names them): the network gets three
/// outputs, trains with CeDice, reports each class's validation DSC and stores the names.
#[test]
fn a_dataset_with_two_classes_trains_a_three_class_network() {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let (root, data) = empty_dataset("train-classes");
    // A red square (class 1) and a blue disc (class 2) on grey, placed differently each time.
    for i in 0..8u32 {
        let (sx, sy) = (2 + (i * 5) % 12, 3 + (i * 3) % 10);
        let (cx, cy) = (22 - (i * 2) % 6, 20 + (i * 7) % 8);
        let class = |x: u32, y: u32| {
            if (x as i32 - cx as i32).pow(2) + (y as i32 - cy as i32).pow(2) <= 25 {
                2u8
            } else if (sx..sx + 9).contains(&x) && (sy..sy + 9).contains(&y) {
                1
            } else {
                0
            }
        };
        RgbImage::from_fn(32, 32, |x, y| match class(x, y) {
            1 => Rgb([220, 40, 40]),
            2 => Rgb([40, 40, 220]),
            _ => Rgb([120, 120, 120]),
        })
        .save(data.join("images").join(format!("s{i}.png")))
        .unwrap();
        GrayImage::from_fn(32, 32, |x, y| Luma([class(x, y)]))
            .save(data.join("masks").join(format!("s{i}.png")))
            .unwrap();
    }
    std::fs::write(
        data.join("classes.json"),
        r#"["background", "square", "disc"]"#,
    )
    .unwrap();
    let out = root.join("run");
    let mut c = train(&data, &out, &root.join("kernels"), 4, false);
    c.args(["--lr", "3e-3"]);
    let stderr = succeeds(c);
    assert!(
        stderr.contains("validation DSC per class: square"),
        "{stderr}"
    );
    let meta = read_meta(&out.join("last.json")).unwrap();
    assert_eq!(meta["config"]["num_classes"], 3, "{meta}");
    assert_eq!(
        meta["input"]["classes"],
        serde_json::json!(["background", "square", "disc"])
    );
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    let epochs = history["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 4);
    for e in epochs {
        let per_class = e["val_dsc_per_class"].as_array().expect("per-class DSC");
        assert_eq!(per_class.len(), 2, "{e}");
        let mean = e["val_dsc"].as_f64().unwrap();
        let present: Vec<f64> = per_class.iter().filter_map(|d| d.as_f64()).collect();
        assert!(
            (mean - present.iter().sum::<f64>() / present.len() as f64).abs() < 1e-9,
            "{e}"
        );
    }
    let loss = |e: &serde_json::Value| e["train_loss"].as_f64().unwrap();
    assert!(
        loss(&epochs[3]) < loss(&epochs[0]),
        "CeDice did not fall: {} then {}",
        loss(&epochs[0]),
        loss(&epochs[3])
    );
}

/// A dataset of NIfTI volumes (the left-atrium MRs) trains slice by slice with a z-score over
/// each volume, and validates with the DSC of each re-stacked volume.
#[test]
fn volumes_train_slice_by_slice_and_validate_per_volume() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mri_cardiac_la");
    let root = scratch("train-volumes");
    let out = root.join("run");
    let mut c = tiny_vm_unet(&data, &out, &root.join("kernels"));
    c.args(["--batch", "16", "--epochs", "1"])
        .args(["--limit-train", "1", "--limit-val", "1"]);
    let stderr = succeeds(c);
    // 88 axial slices per volume.
    assert!(
        stderr.contains("88 training and 88 validation slices from 1 and 1 volumes"),
        "{stderr}"
    );
    let meta = read_meta(&out.join("last.json")).unwrap();
    assert_eq!(
        meta["input"]["normalization"]["kind"], "mr_z_score",
        "{meta}"
    );
    let dsc = meta["epoch"]["val_dsc"].as_f64().expect("a validation DSC");
    assert!((0.0..=1.0).contains(&dsc), "{dsc}");
}
