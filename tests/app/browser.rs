//! medseg in a real browser (headless Chromium from Debian's package, WebGPU on its software
//! adapter), pages served on 127.0.0.1 by `medseg::serve`, which also takes the pages' reports.
//!
//! - Every WGSL file of `shaders/` compiled by the browser (Chromium's Tint, stricter than naga:
//!   e.g. a barrier under non-uniform control flow), and every compute kernel built into a
//!   pipeline on a device with WebGPU's default limits (8 storage buffers per stage, 16 KiB of
//!   workgroup memory, 256 invocations): `web/shader-check.html`. With CI or MEDSEG_REQUIRE_GPU
//!   set a missing browser fails the test.
//! - The browser build (`scripts/build-web.sh`) opens the bundled colonoscopy frame, segments
//!   it with the bundled polyp model on WebGPU and posts the mask back (`report=1`); the mask
//!   must match the native build's (DSC ≥ 0.99), and the page must have asked for nothing but
//!   its own files. It needs the built folder (`MEDSEG_WEB_DIR`, default
//!   `$CARGO_TARGET_DIR/web`), a wasm build of burn (~15 minutes on 2 cores), so it is ignored
//!   by default: `bash scripts/build-web.sh && cargo test -p medseg --test app browser -- --ignored`.

use medseg::jobs::models::BUNDLED;
use medseg::serve::{self, OnReport, Seen};
use medseg_data::volume::LabelMap;
use medseg_model::gpu::gpu_required;
use medseg_model::shaders::{self, ShaderFile};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("MEDSEG_CHROMIUM").map(PathBuf::from);
    named
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.is_file())
}

struct Browser(Child, PathBuf);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Headless Chromium on `url`, with a fresh profile and no background traffic. `canvas`: the
/// page draws to a WebGPU canvas, which headless Chromium keeps alive only on SwiftShader's
/// Vulkan (the three switches together; any subset loses the device at the first frame).
fn launch(exe: &Path, url: &str, canvas: bool) -> Browser {
    let profile = std::env::temp_dir().join(format!(
        "medseg-chromium-{}-{}",
        std::process::id(),
        canvas as u8
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--enable-unsafe-webgpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1280,860",
    ]);
    if canvas {
        cmd.args([
            "--enable-features=Vulkan",
            "--use-vulkan=swiftshader",
            "--use-angle=swiftshader",
        ]);
    }
    let child = cmd
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    Browser(child, profile)
}

/// What a served page posted to `/report/…` (path with query, body).
type Reports = mpsc::Receiver<(String, Vec<u8>)>;

/// Serves `root` on a free port of 127.0.0.1; reports come out of the returned channel, and
/// every request the server saw is kept in the returned list.
fn serve_folder(root: PathBuf) -> (u16, Reports, Arc<Mutex<Vec<Seen>>>) {
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
    std::thread::spawn(move || serve::serve_forever(listener, root, Some(on_report), log));
    (port, rx, seen)
}

/// The sources the page compiles: every composed kernel file, the helpers (their own module
/// each, so a helper's error names the helper), and the app's slice-view render shader.
fn sources() -> Value {
    let entry = |name: &str, source: String| json!({"name": name, "compute": source.contains("@compute"), "source": source});
    let mut list: Vec<Value> = shaders::ALL
        .iter()
        .filter(|f: &&ShaderFile| f.source.contains("@compute"))
        .map(|f| entry(f.name, shaders::compose(f)))
        .collect();
    let view = repo().join("shaders/slice_view.wgsl");
    let text = std::fs::read_to_string(&view).expect("shaders/slice_view.wgsl");
    list.push(entry("slice_view.wgsl", text));
    Value::Array(list)
}

#[test]
fn every_kernel_compiles_in_chromium_within_webgpu_default_limits() {
    let Some(exe) = chromium() else {
        assert!(
            !gpu_required(),
            "no chromium (install Debian's chromium, or set MEDSEG_CHROMIUM) and \
             CI/MEDSEG_REQUIRE_GPU is set"
        );
        eprintln!("SKIPPING browser shader check: no chromium found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("web/shader-check.html"),
        dir.path().join("shader-check.html"),
    )
    .expect("the check page");
    let sources = sources();
    std::fs::write(
        dir.path().join("kernels.json"),
        serde_json::to_vec(&sources).unwrap(),
    )
    .unwrap();
    let (port, rx, _) = serve_folder(dir.path().to_path_buf());
    let _browser = launch(
        &exe,
        &format!("http://127.0.0.1:{port}/shader-check.html"),
        false,
    );
    let (_, body) = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the page reported within 3 minutes");
    let report: Value = serde_json::from_slice(&body).expect("the report is JSON");
    assert!(
        report["error"].is_null(),
        "browser: {} ({})",
        report["error"],
        report["user_agent"]
    );
    eprintln!("Chromium WebGPU adapter: {}", report["adapter"]);
    let checked = report["kernels"].as_array().expect("kernels");
    assert_eq!(checked.len(), sources.as_array().unwrap().len());
    let mut failures = Vec::new();
    for k in checked {
        let name = k["name"].as_str().unwrap_or("?");
        for m in k["messages"].as_array().into_iter().flatten() {
            let line = format!("{name}:{}:{}: {}", m["line"], m["column"], m["text"]);
            if m["type"] == "error" {
                failures.push(line);
            } else {
                eprintln!("{} {line}", m["type"]);
            }
        }
        if let Some(e) = k["pipeline_error"].as_str() {
            failures.push(format!("{name}: pipeline: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "the browser refused {} kernel(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn web_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MEDSEG_WEB_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("web")
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
    let exe = chromium().expect("chromium (Debian's package, or MEDSEG_CHROMIUM)");
    let (port, rx, seen) = serve_folder(dir.clone());
    let t0 = Instant::now();
    let _browser = launch(
        &exe,
        &format!("http://127.0.0.1:{port}/?sample=2&segment=1&report=1"),
        true,
    );
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
