//! Every WGSL file of `shaders/` compiled by a real browser's WebGPU (Chromium's Tint, stricter
//! than naga: e.g. a barrier under non-uniform control flow), and every compute kernel built into
//! a pipeline on a device with WebGPU's default limits (8 storage buffers per stage, 16 KiB of
//! workgroup memory, 256 invocations). The page is `web/shader-check.html`, served on 127.0.0.1
//! by this test, which also receives the page's report. Needs Debian's `chromium` (installed by
//! `scripts/ensure-deps.sh`); with CI or MEDSEG_REQUIRE_GPU set a missing browser fails the test.

use medseg_model::gpu::gpu_required;
use medseg_model::shaders::{self, ShaderFile};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Serves the page and the sources until the report arrives; returns the port.
fn serve(page: Vec<u8>, kernels: Vec<u8>, report: mpsc::Sender<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = read_request(&mut stream) else {
                continue;
            };
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/shader-check.html") => {
                    respond(&mut stream, "200 OK", "text/html; charset=utf-8", &page)
                }
                ("GET", "/kernels.json") => {
                    respond(&mut stream, "200 OK", "application/json", &kernels)
                }
                ("POST", "/report") => {
                    respond(&mut stream, "200 OK", "text/plain", b"ok");
                    let _ = report.send(req.body);
                    return;
                }
                _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
            }
        }
    });
    port
}

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn launch(exe: &Path, url: &str, profile: &Path) -> Browser {
    let child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    Browser(child)
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
    let page = std::fs::read(repo().join("web/shader-check.html")).expect("the check page");
    let sources = sources();
    let kernels = serde_json::to_vec(&sources).unwrap();
    let (tx, rx) = mpsc::channel();
    let port = serve(page, kernels, tx);
    let profile = std::env::temp_dir().join(format!("medseg-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let _browser = launch(
        &exe,
        &format!("http://127.0.0.1:{port}/shader-check.html"),
        &profile,
    );
    let body = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the page reported within 3 minutes");
    let _ = std::fs::remove_dir_all(&profile);
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
