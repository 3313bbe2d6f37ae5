//! The real app in a real window: `medseg view` under Xvfb (rendered by lavapipe in CI) opens the
//! bundled CT with its organ labels, saves a screenshot and quits; the screenshot must show the
//! image (not blank), grey where there is no label and the overlay colour where there is one.

use crate::harness::assets;
use std::path::Path;
use std::process::Command;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn real_window_under_xvfb_shows_ct_with_overlay() {
    if !have("xvfb-run") {
        assert!(
            !medseg_model::gpu::gpu_required(),
            "xvfb-run is missing (scripts/ensure-deps.sh installs it) and CI requires this test"
        );
        eprintln!("skipping: xvfb-run not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("medseg-xvfb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("shot.png");
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    let out = Command::new("timeout")
        .arg("300")
        .arg("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x900x24"])
        .arg(env!("CARGO_BIN_EXE_medseg"))
        .arg("view")
        .arg(assets().join("ct_abdomen.nii.gz"))
        .arg("--labels")
        .arg(assets().join("ct_abdomen_labels.nii.gz"))
        .arg("--screenshot")
        .arg(&shot)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("MEDSEG_CONFIG_DIR", dir.join("config"))
        .output()
        .expect("running xvfb-run");
    assert!(
        out.status.success() && shot.exists(),
        "medseg view failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check_screenshot(&shot);
    // The opened files went into the recent-files list.
    let recent: Vec<std::path::PathBuf> =
        serde_json::from_slice(&std::fs::read(dir.join("config/recent.json")).unwrap()).unwrap();
    let canon = |p: &str| std::fs::canonicalize(assets().join(p)).unwrap();
    assert_eq!(
        recent,
        [
            canon("ct_abdomen_labels.nii.gz"),
            canon("ct_abdomen.nii.gz")
        ]
    );
}

fn check_screenshot(shot: &Path) {
    let img = image::open(shot).unwrap().to_rgb8();
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shot.with_extension("json")).unwrap()).unwrap();
    // Not blank: the luminance varies.
    let lum: Vec<f64> = img
        .pixels()
        .map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let sd = (lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64).sqrt();
    assert!(sd > 10.0, "the screenshot is nearly uniform (sd {sd:.1})");

    let labels = medseg_data::load_labels(&assets().join("ct_abdomen_labels.nii.gz")).unwrap();
    let dims = labels.geometry.dims;
    let views = layout["views"].as_array().unwrap();
    assert_eq!(views.len(), 3, "three planes on screen: {layout}");
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let (mut labelled, mut coloured, mut plain, mut grey) = (0usize, 0usize, 0usize, 0usize);
    for view in views {
        let w: Vec<f64> = view["widget_px"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let r: Vec<f64> = view["image_rect_px"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let (u, v, n) = (
            view["u"].as_u64().unwrap() as usize,
            view["v"].as_u64().unwrap() as usize,
            view["n"].as_u64().unwrap() as usize,
        );
        let (fu_flip, fv_flip) = (
            view["flip_u"].as_bool().unwrap(),
            view["flip_v"].as_bool().unwrap(),
        );
        let slice = view["slice"].as_u64().unwrap() as usize;
        let cursor: Vec<f64> = view["cursor_px"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let label_at = |x: f64, y: f64| -> Option<u16> {
            let mut fu = (x - r[0]) / (r[2] - r[0]);
            let mut fv = (y - r[1]) / (r[3] - r[1]);
            if fu_flip {
                fu = 1.0 - fu;
            }
            if fv_flip {
                fv = 1.0 - fv;
            }
            if !(0.0..1.0).contains(&fu) || !(0.0..1.0).contains(&fv) {
                return None;
            }
            let mut vox = [0usize; 3];
            vox[u] = (fu * dims[u] as f64) as usize;
            vox[v] = (fv * dims[v] as f64) as usize;
            vox[n] = slice;
            Some(labels.labels[(vox[2] * dims[1] + vox[1]) * dims[0] + vox[0]])
        };
        // Away from the widget's edges (letters, slice text) and the crosshair lines.
        let margin = 40.0;
        let (x0, x1) = (w[0].max(r[0]) + margin, w[2].min(r[2]) - margin);
        let (y0, y1) = (w[1].max(r[1]) + margin, w[3].min(r[3]) - margin);
        let mut y = y0;
        while y < y1 {
            let mut x = x0;
            while x < x1 {
                let (cx, cy) = (x + 0.5, y + 0.5);
                if (cx - cursor[0]).abs() < 3.0 || (cy - cursor[1]).abs() < 3.0 {
                    x += 1.0;
                    continue;
                }
                let Some(l) = label_at(cx, cy) else {
                    x += 1.0;
                    continue;
                };
                // Only pixels whose neighbourhood has the same label (no edges).
                let uniform = [(-3.0, 0.0), (3.0, 0.0), (0.0, -3.0), (0.0, 3.0)]
                    .iter()
                    .all(|(dx, dy)| label_at(cx + dx, cy + dy) == Some(l));
                if uniform {
                    let p = img.get_pixel(x as u32, y as u32);
                    let chroma =
                        *p.0.iter().max().unwrap() as i32 - *p.0.iter().min().unwrap() as i32;
                    if l != 0 {
                        labelled += 1;
                        coloured += (chroma >= 20) as usize;
                    } else {
                        plain += 1;
                        grey += (chroma <= 6) as usize;
                    }
                }
                x += 1.0;
            }
            y += 1.0;
        }
    }
    assert!(
        labelled > 300 && plain > 3000,
        "too few pixels checked: {labelled} / {plain}"
    );
    assert!(
        coloured as f64 >= 0.9 * labelled as f64,
        "overlay colour at only {coloured} of {labelled} labelled pixels"
    );
    assert!(
        grey as f64 >= 0.95 * plain as f64,
        "only {grey} of {plain} unlabelled pixels are grey"
    );
}
