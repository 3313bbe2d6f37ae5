//! The official code's fixtures (`shared/fixtures`, format in its README): reading them,
//! comparing our numbers with theirs (relative L2, tolerances) and the per-file report. Knows no
//! network; the checks themselves are in [`crate::parity`].

pub use crate::tensors::{tensor, values};
use std::collections::BTreeMap;
use std::path::Path;

/// One tensor of a fixture file, widened to f64.
#[derive(Debug, Clone)]
pub struct FixtureTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// A parsed fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub tensors: BTreeMap<String, FixtureTensor>,
    /// The `info` JSON of the header metadata (Null when absent).
    pub info: serde_json::Value,
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let info = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("info"))
            .map(|s| serde_json::from_str(s).map_err(|e| format!("header 'info' is not JSON: {e}")))
            .transpose()?
            .unwrap_or(serde_json::Value::Null);
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect(),
                safetensors::Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                safetensors::Dtype::I64 => raw
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
                    .collect(),
                other => return Err(format!("tensor '{name}' has unsupported dtype {other:?}")),
            };
            tensors.insert(
                name,
                FixtureTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Self { tensors, info })
    }

    pub fn get(&self, name: &str) -> Result<&FixtureTensor, String> {
        self.tensors
            .get(name)
            .ok_or_else(|| format!("missing tensor '{name}'"))
    }

    /// A tensor that must have `rank` dimensions.
    pub fn shaped(&self, name: &str, rank: usize) -> Result<&FixtureTensor, String> {
        let t = self.get(name)?;
        if t.shape.len() != rank {
            return Err(format!(
                "tensor '{name}' has shape {:?}; rank {rank} expected",
                t.shape
            ));
        }
        Ok(t)
    }
}

/// The fixtures README's error: ||a - ref|| / max(||ref||, 1e-6·sqrt(numel)).
pub fn rel_l2(a: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(a.len(), reference.len(), "rel_l2 of different lengths");
    let diff = a
        .iter()
        .zip(reference)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm = reference.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-6 * (reference.len() as f64).sqrt())
}

pub fn max_abs(a: &[f64], reference: &[f64]) -> f64 {
    a.iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// How one compared quantity is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    Relative(f64),
    Absolute(f64),
}

/// One compared quantity of a file.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub name: String,
    pub error: f64,
    pub tolerance: Tolerance,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        let limit = match self.tolerance {
            Tolerance::Relative(t) | Tolerance::Absolute(t) => t,
        };
        self.error.is_finite() && self.error <= limit
    }
}

/// What happened to one file.
#[derive(Debug, Clone)]
pub enum Outcome {
    Checked(Vec<Comparison>),
    /// A known prefix, but the file could not be interpreted.
    Unreadable(String),
    /// No check knows this prefix yet, or its check does not cover this file yet (the reason).
    NotChecked(Option<String>),
}

/// Why a check did not produce comparisons.
#[derive(Debug, Clone)]
pub enum CheckError {
    /// The file cannot be interpreted (missing tensor, wrong shape, corrupt).
    Unreadable(String),
    /// The check recognises the file but does not cover it yet (the reason).
    NotCovered(String),
}

impl From<String> for CheckError {
    fn from(e: String) -> Self {
        CheckError::Unreadable(e)
    }
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub file: String,
    pub kind: &'static str,
    pub outcome: Outcome,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Outcome::Checked(c) => c.iter().all(Comparison::passed),
            Outcome::Unreadable(_) => false,
            Outcome::NotChecked(_) => true,
        }
    }

    /// One line: status, file, worst relative and absolute-judged errors, and failures.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Checked(c) => {
                let worst = |abs: bool| {
                    c.iter()
                        .filter(|x| matches!(x.tolerance, Tolerance::Absolute(_)) == abs)
                        .max_by(|a, b| a.error.total_cmp(&b.error))
                };
                let mut s = format!(
                    "{} {:<36} {:<15}",
                    if self.passed() { "PASS" } else { "FAIL" },
                    self.file,
                    self.kind
                );
                if let Some(w) = worst(false) {
                    s += &format!(" max rel {:.2e} ({})", w.error, w.name);
                }
                if let Some(w) = worst(true) {
                    s += &format!(" max abs {:.2e} ({})", w.error, w.name);
                }
                let failed: Vec<_> = c
                    .iter()
                    .filter(|x| !x.passed())
                    .map(|x| format!("{} {:.2e}", x.name, x.error))
                    .collect();
                if !failed.is_empty() {
                    s += &format!(" over tolerance: {}", failed.join(", "));
                }
                s
            }
            Outcome::Unreadable(e) => format!(
                "FAIL {:<36} {:<15} cannot interpret: {e}",
                self.file, self.kind
            ),
            Outcome::NotChecked(None) => format!(
                "---- {:<36} not checked (no check for this prefix yet)",
                self.file
            ),
            Outcome::NotChecked(Some(why)) => format!("---- {:<36} not checked: {why}", self.file),
        }
    }
}

/// (B, K·D, L) channel k·D + d  →  (B, K, L, D).
pub fn seq_to_ours(x: &[f64], b: usize, k: usize, d: usize, l: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for ki in 0..k {
            for di in 0..d {
                for li in 0..l {
                    out[((bi * k + ki) * l + li) * d + di] = x[(bi * k * d + ki * d + di) * l + li];
                }
            }
        }
    }
    out
}

/// (B, K, N, L)  →  (B, K, L, N).
pub fn states_to_ours(x: &[f64], b: usize, k: usize, n: usize, l: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for bk in 0..b * k {
        for ni in 0..n {
            for li in 0..l {
                out[(bk * l + li) * n + ni] = x[(bk * n + ni) * l + li];
            }
        }
    }
    out
}
