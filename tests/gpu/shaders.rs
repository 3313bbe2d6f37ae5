//! Every `.wgsl` file of `shaders/` parses and validates with naga under the capabilities
//! WebGPU guarantees; errors name the file and line.

use medseg_model::shaders::{appended_files, compose_with};
use std::path::{Path, PathBuf};

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders")
}

/// Validate `source` (a file of `dir` named `name`) with its appended files; on error return
/// "file:line:column: message".
fn validate(dir: &Path, name: &str, source: &str) -> Result<(), String> {
    let (text, starts) = compose_with(source, |f| std::fs::read_to_string(dir.join(f)).ok())?;
    let locate = |line: u32, col: u32| -> String {
        let line = line as usize;
        let mut file = name.to_string();
        let mut local = line;
        for (appended, start) in &starts {
            if line >= *start {
                file = appended.clone();
                local = line - start + 1;
            }
        }
        format!("{file}:{local}:{col}")
    };
    let module = naga::front::wgsl::parse_str(&text).map_err(|e| {
        let at = e
            .location(&text)
            .map(|l| locate(l.line_number, l.line_position))
            .unwrap_or_else(|| name.into());
        format!(
            "{at}: {}\n{}",
            e.message(),
            e.emit_to_string_with_path(&text, name)
        )
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| {
        let at = e
            .location(&text)
            .map(|l| locate(l.line_number, l.line_position))
            .unwrap_or_else(|| name.into());
        format!(
            "{at}: {}\n{}",
            e.as_inner(),
            e.emit_to_string_with_path(&text, name)
        )
    })?;
    Ok(())
}

#[test]
fn every_wgsl_file_validates_for_webgpu() {
    let dir = shader_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 6,
        "expected the scan kernels in shaders/, found {names:?}"
    );
    let mut errors = Vec::new();
    for name in &names {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        if let Err(e) = validate(&dir, name, &source) {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "invalid WGSL:\n{}", errors.join("\n\n"));
}

#[test]
fn embedded_kernels_are_the_files_on_disk() {
    let dir = shader_dir();
    for file in medseg_model::shaders::ALL {
        let disk = std::fs::read_to_string(dir.join(file.name)).unwrap();
        assert_eq!(
            disk, file.source,
            "{} differs from the embedded copy",
            file.name
        );
        for appended in appended_files(file.source) {
            assert!(
                dir.join(appended).exists(),
                "{} appends missing {appended}",
                file.name
            );
        }
    }
}

/// A deliberately broken kernel is rejected with its file name and the broken line.
#[test]
fn a_broken_kernel_reports_file_and_line() {
    let dir = shader_dir();
    let source = std::fs::read_to_string(dir.join("scan_forward.wgsl")).unwrap();
    let mut lines: Vec<&str> = source.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("let dtu = dt * uv;"))
        .expect("marker line");
    lines.insert(at + 1, "            let broken: f32 = dtu + 1u;");
    let broken = lines.join("\n");
    let err = validate(&dir, "scan_forward.wgsl", &broken).expect_err("type error must be caught");
    assert!(
        err.starts_with(&format!("scan_forward.wgsl:{}:", at + 2)),
        "{err}"
    );

    // A syntax error in the appended helper file is reported against that file.
    let helper = std::fs::read_to_string(dir.join("scan_common.wgsl")).unwrap();
    let tmp = std::env::temp_dir().join(format!("medseg-wgsl-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut hl: Vec<&str> = helper.lines().collect();
    hl.insert(3, "fn oops( {");
    std::fs::write(tmp.join("scan_common.wgsl"), hl.join("\n")).unwrap();
    let err =
        validate(&tmp, "scan_forward.wgsl", &source).expect_err("syntax error must be caught");
    assert!(err.starts_with("scan_common.wgsl:4:"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Every kernel binds at most eight storage buffers, WebGPU's default per shader stage (what
/// a browser grants without asking), so the same shaders run in the browser build.
#[test]
fn every_kernel_fits_webgpu_default_storage_buffer_limit() {
    let dir = shader_dir();
    let mut over = Vec::new();
    for file in medseg_model::shaders::ALL {
        let (text, _) =
            compose_with(file.source, |f| std::fs::read_to_string(dir.join(f)).ok()).unwrap();
        let module = naga::front::wgsl::parse_str(&text).unwrap();
        let storage = module
            .global_variables
            .iter()
            .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }))
            .count();
        // Kernels bind buffers; a helper may hold only code (conv_tiles.wgsl).
        let kernel = file.source.contains("@compute");
        assert!(storage > 0 || !kernel, "{}: no buffers", file.name);
        if storage > 8 {
            over.push(format!("{}: {storage} storage buffers", file.name));
        }
    }
    assert!(
        over.is_empty(),
        "over WebGPU's default of 8:\n{}",
        over.join("\n")
    );
}
