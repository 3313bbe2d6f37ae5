//! The browser build in a real browser (headless Chromium on its software WebGPU): the page
//! built by `scripts/build-web.sh` is served on 127.0.0.1 by `medseg::serve`, opens the bundled
//! colonoscopy frame, segments it with the bundled polyp model on WebGPU and posts the mask back
//! (`report=1`); the mask must match the native build's on the same image (DSC ≥ 0.99), and
//! the page must have asked for nothing but its own static files.
//!
//! It needs the built folder (`MEDSEG_WEB_DIR`, default `$CARGO_TARGET_DIR/web`), which takes a
//! wasm build of burn (~15 minutes on 2 cores): run it with
//! `bash scripts/build-web.sh && cargo test -p medseg --test app browser_app -- --ignored`.

use medseg::jobs::models::BUNDLED;
use medseg::serve::{self, OnReport, Seen};
use medseg_data::volume::LabelMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn web_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MEDSEG_WEB_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("web")
}

struct Browser(Child, PathBuf);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Headless Chromium on SwiftShader's Vulkan: the three switches together keep a WebGPU canvas
/// alive headless (any subset loses the device at eframe's first frame).
fn launch(url: &str) -> Browser {
    let exe = std::env::var_os("MEDSEG_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        exe.is_file(),
        "no chromium at {} (set MEDSEG_CHROMIUM)",
        exe.display()
    );
    let profile = std::env::temp_dir().join(format!("medseg-web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--enable-features=Vulkan",
            "--use-vulkan=swiftshader",
            "--use-angle=swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,860",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    Browser(child, profile)
}

fn dice(a: &[u16], b: &[u16]) -> f64 {
    let (mut both, mut sum) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        both += (x > 0 && y > 0) as usize;
        sum += (x > 0) as usize + (y > 0) as usize;
    }
    if sum == 0 {
        1.0
    } else {
        2.0 * both as f64 / sum as f64
    }
}

/// The native build's mask of the bundled colonoscopy frame with the bundled polyp model.
fn native_mask() -> LabelMap {
    let ctx = medseg_model::gpu::GpuContext::create().expect("a GPU adapter (lavapipe in CI)");
    let m = BUNDLED.iter().find(|m| m.id == "polyp-sa-umamba").unwrap();
    let mut model =
        medseg_model::segment::SegModel::from_bytes(m.id, m.json, m.weights, &ctx.device).unwrap();
    let (image, _) = medseg::gui::sample::SAMPLES[2].load().unwrap();
    model.segment(&image, &mut |_, _| true).unwrap().labels(0.5)
}

#[test]
#[ignore = "needs the browser build: bash scripts/build-web.sh, then run with --ignored"]
fn the_browser_build_segments_the_bundled_polyp_like_the_native_build() {
    let dir = web_dir();
    assert!(
        dir.join("medseg_web_bg.wasm").is_file(),
        "no browser build in {} (bash scripts/build-web.sh)",
        dir.display()
    );
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    let tx = Mutex::new(tx);
    let on_report: OnReport = Arc::new(move |path: &str, body: Vec<u8>| {
        let _ = tx.lock().unwrap().send((path.to_string(), body));
    });
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = {
        let seen = seen.clone();
        Arc::new(move |s: Seen| seen.lock().unwrap().push(s))
    };
    let (listener, port) = serve::bind(0).unwrap();
    let root = dir.clone();
    std::thread::spawn(move || serve::serve_forever(listener, root, Some(on_report), log));
    let t0 = Instant::now();
    let _browser = launch(&format!(
        "http://127.0.0.1:{port}/?sample=2&segment=1&report=1"
    ));
    let native = native_mask();
    // The page's console errors and warnings (a Rust panic's message lands there), first one
    // kept for the failure message.
    let mut console = None;
    let mask = loop {
        let (path, body) = rx
            .recv_timeout(Duration::from_secs(1200).saturating_sub(t0.elapsed()))
            .expect("the page reported a mask within 20 minutes");
        let text = String::from_utf8_lossy(&body).into_owned();
        if path.starts_with("/report/console") {
            eprintln!("browser console: {text}");
            console.get_or_insert(text);
            continue;
        }
        if path.starts_with("/report/error") {
            panic!(
                "the page failed: {text}; first console message: {}",
                console.unwrap_or_default()
            );
        }
        if path.starts_with("/report/mask") {
            eprintln!(
                "browser: first mask at {path} (page time in ms), {:.1} s after launch",
                t0.elapsed().as_secs_f64()
            );
            break medseg_data::volume::load_labels_bytes(Path::new("mask.png"), &body)
                .expect("the mask is a PNG");
        }
    };
    assert_eq!(mask.geometry.dims, native.geometry.dims);
    let d = dice(&mask.labels, &native.labels);
    let fg = native.labels.iter().filter(|&&l| l > 0).count();
    assert!(fg > 100, "the native mask finds the polyp ({fg} pixels)");
    assert!(d >= 0.99, "browser vs native DSC {d:.4}");
    // The page asked only for its own files; the only posts are the test's reports.
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| format!("/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    for s in seen.lock().unwrap().iter() {
        let path = s.path.split('?').next().unwrap_or("");
        // (The browser asks for a favicon by itself.)
        let own_file = s.method == "GET"
            && (path == "/" || path == "/favicon.ico" || files.iter().any(|f| f == path));
        let report = s.method == "POST" && path.starts_with("/report/");
        assert!(own_file || report, "unexpected request {s:?}");
        assert!(report || s.body_len == 0, "a request carried data: {s:?}");
    }
}
