//! The WGSL kernels of `shaders/`, embedded at build time.
//!
//! A kernel file may name helper files on lines of the form `// @append NAME.wgsl`; the
//! composed source is the kernel followed by those files. WGSL declarations at module scope
//! are order independent, and appending keeps every line number of the kernel file its own.

/// One `.wgsl` file of `shaders/`.
#[derive(Debug, Clone, Copy)]
pub struct ShaderFile {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! shader {
    ($name:literal) => {
        ShaderFile {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/", $name)),
        }
    };
}

pub const SCAN_COMMON: ShaderFile = shader!("scan_common.wgsl");
pub const SCAN_REDUCE: ShaderFile = shader!("scan_reduce.wgsl");
pub const SCAN_CARRY: ShaderFile = shader!("scan_carry.wgsl");
pub const SCAN_FORWARD: ShaderFile = shader!("scan_forward.wgsl");
pub const SCAN_BACKWARD_REDUCE: ShaderFile = shader!("scan_backward_reduce.wgsl");
pub const SCAN_BACKWARD: ShaderFile = shader!("scan_backward.wgsl");
pub const COPY: ShaderFile = shader!("copy.wgsl");
pub const ADAMW: ShaderFile = shader!("adamw.wgsl");
pub const SEMA_COMMON: ShaderFile = shader!("sema_common.wgsl");
pub const SEMA_FORWARD: ShaderFile = shader!("sema_forward.wgsl");
pub const SEMA_BACKWARD_Q: ShaderFile = shader!("sema_backward_q.wgsl");
pub const SEMA_BACKWARD_KV: ShaderFile = shader!("sema_backward_kv.wgsl");
pub const RFA_COMMON: ShaderFile = shader!("rfa_common.wgsl");
pub const RFA_ATTENTION: ShaderFile = shader!("rfa_attention.wgsl");
pub const RFA_ATTENTION_BACKWARD: ShaderFile = shader!("rfa_attention_backward.wgsl");
pub const CONV_COMMON: ShaderFile = shader!("conv_common.wgsl");
pub const CONV_TILES: ShaderFile = shader!("conv_tiles.wgsl");
pub const CONV_GEMM: ShaderFile = shader!("conv_gemm.wgsl");
pub const CONV_WGRAD: ShaderFile = shader!("conv_wgrad.wgsl");
pub const CONV_DEPTHWISE_WGRAD: ShaderFile = shader!("conv_depthwise_wgrad.wgsl");

/// Every embedded file (kernels and helpers).
pub const ALL: &[ShaderFile] = &[
    SCAN_COMMON,
    SCAN_REDUCE,
    SCAN_CARRY,
    SCAN_FORWARD,
    SCAN_BACKWARD_REDUCE,
    SCAN_BACKWARD,
    COPY,
    ADAMW,
    SEMA_COMMON,
    SEMA_FORWARD,
    SEMA_BACKWARD_Q,
    SEMA_BACKWARD_KV,
    RFA_COMMON,
    RFA_ATTENTION,
    RFA_ATTENTION_BACKWARD,
    CONV_COMMON,
    CONV_TILES,
    CONV_GEMM,
    CONV_WGRAD,
    CONV_DEPTHWISE_WGRAD,
];

const APPEND: &str = "// @append ";

/// Names of the files `source` asks to have appended.
pub fn appended_files(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix(APPEND))
        .map(str::trim)
        .collect()
}

/// Source of `source` with its `// @append` files resolved through `lookup`.
/// Returns the composed text and, per appended file, the composed line where it starts.
pub fn compose_with(
    source: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, Vec<(String, usize)>), String> {
    let mut out = String::from(source);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let mut starts = Vec::new();
    for name in appended_files(source) {
        let text = lookup(name).ok_or_else(|| format!("appended file '{name}' not found"))?;
        starts.push((name.to_string(), out.lines().count() + 1));
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok((out, starts))
}

/// The complete source of an embedded kernel.
pub fn compose(file: &ShaderFile) -> String {
    compose_with(file.source, |name| {
        ALL.iter()
            .find(|f| f.name == name)
            .map(|f| f.source.to_string())
    })
    .map(|(text, _)| text)
    .unwrap_or_else(|e| panic!("{}: {e} (embedded shader set is inconsistent)", file.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_append_resolves() {
        for file in ALL {
            let composed = compose(file);
            assert!(composed.starts_with(file.source));
        }
    }

    #[test]
    fn appended_line_numbers() {
        let (text, starts) =
            compose_with("a\n// @append x.wgsl\nb", |_| Some("x1\nx2\n".into())).unwrap();
        assert_eq!(text, "a\n// @append x.wgsl\nb\nx1\nx2\n");
        assert_eq!(starts, vec![("x.wgsl".to_string(), 4)]);
    }
}
