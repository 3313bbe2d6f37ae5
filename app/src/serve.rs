//! A small static file server on 127.0.0.1 for the browser build (`medseg serve-web DIR`, and
//! the browser test): GET serves files under one folder (`/` is `index.html`) with the content
//! types a page needs (WebAssembly must come as `application/wasm`); POST to `/report/…` goes
//! to a callback when one is given (the test's report channel), and is refused otherwise.
//! Loopback only: the page is a secure context there, and nothing is exposed to the network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Called with (path with query, body) for each POST to `/report/…`.
pub type OnReport = Arc<dyn Fn(&str, Vec<u8>) + Send + Sync>;

/// What the server saw of one request, for the log (and for tests that check what a page
/// asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body_len: usize,
}

/// Binds 127.0.0.1:`port` (0: any free port). Returns the listener and its port; run
/// [`serve_forever`] on it.
pub fn bind(port: u16) -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// Serves `root` on `listener` until the process ends; `log` sees every request.
pub fn serve_forever(
    listener: TcpListener,
    root: PathBuf,
    on_report: Option<OnReport>,
    log: Arc<dyn Fn(Seen) + Send + Sync>,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (root, on_report, log) = (root.clone(), on_report.clone(), log.clone());
        std::thread::spawn(move || {
            if let Some(seen) = handle(stream, &root, on_report.as_ref()) {
                log(seen);
            }
        });
    }
}

fn handle(mut stream: TcpStream, root: &Path, on_report: Option<&OnReport>) -> Option<Seen> {
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
    // Reports are small (a mask, a message); anything larger is refused unread.
    const MOST: usize = 64 << 20;
    let mut body = Vec::new();
    if length <= MOST {
        body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
    }
    let status = match (method.as_str(), on_report) {
        ("GET" | "HEAD", _) => match file_for(root, &path) {
            Some((file, kind)) => match std::fs::read(&file) {
                Ok(bytes) => {
                    let bytes = if method == "HEAD" { Vec::new() } else { bytes };
                    respond(&mut stream, "200 OK", kind, &bytes);
                    200
                }
                Err(_) => not_found(&mut stream),
            },
            None => not_found(&mut stream),
        },
        ("POST", Some(report)) if path.starts_with("/report/") && length <= MOST => {
            respond(&mut stream, "200 OK", "text/plain", b"ok");
            report(&path, body);
            200
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"not allowed",
            );
            405
        }
    };
    Some(Seen {
        method,
        path,
        status,
        body_len: length,
    })
}

fn not_found(stream: &mut TcpStream) -> u16 {
    respond(stream, "404 Not Found", "text/plain", b"not found");
    404
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// The file a GET path names under `root` and its content type; None for paths that leave
/// `root` (`..`, absolute parts) or name no regular file.
pub fn file_for(root: &Path, url_path: &str) -> Option<(PathBuf, &'static str)> {
    let path = url_path.split(['?', '#']).next()?;
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let rel = Path::new(path.trim_start_matches('/'));
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(rel);
    if !file.is_file() {
        return None;
    }
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let kind = match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    };
    Some((file, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_folder_and_get_their_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>").unwrap();
        std::fs::write(dir.path().join("medseg_web_bg.wasm"), [0u8, 97, 115, 109]).unwrap();
        let (f, k) = file_for(dir.path(), "/").unwrap();
        assert_eq!(
            (f.file_name().unwrap().to_str().unwrap(), k),
            ("index.html", "text/html; charset=utf-8")
        );
        assert_eq!(
            file_for(dir.path(), "/medseg_web_bg.wasm?v=1").unwrap().1,
            "application/wasm"
        );
        assert!(file_for(dir.path(), "/../etc/passwd").is_none());
        assert!(file_for(dir.path(), "/%2e%2e/x").is_none());
        assert!(file_for(dir.path(), "//etc/passwd").is_none());
        assert!(file_for(dir.path(), "/missing.js").is_none());
    }
}
