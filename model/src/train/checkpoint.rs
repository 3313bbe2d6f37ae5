//! Checkpoints: the network's parameters and BatchNorm running statistics under their official
//! names in a `.safetensors` file (f32), with a `.json` beside it holding the configuration and
//! the epoch's numbers; `state.*` adds the AdamW moments and the generator states so a run can
//! continue. Everything is written atomically, and loading refuses a checkpoint that does not
//! match its configuration, listing the first mismatches.

use super::optim::GpuAdamW;
use super::trainer::{model_name, EpochReport, TrainConfig, TrainState, TrainSummary};
use crate::nn::net::{Net, NetConfig};
use crate::nn::params::{AnyParam, Loader, NamedParams, WeightSource};
use burn::tensor::{Device, Tensor, TensorData};
use medseg_data::preprocess::InputSpec;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What can go wrong reading or writing checkpoints and training states.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file (or bytes in memory) is not what it should be: not safetensors or JSON, a field
    /// missing or of the wrong kind.
    #[error("{}{problem}", prefix(path))]
    Format {
        path: Option<PathBuf>,
        problem: String,
    },
    /// The stored tensors do not fit the network, or a saved state does not fit the run.
    #[error("{}{problem}", prefix(path))]
    Mismatch {
        path: Option<PathBuf>,
        problem: String,
    },
    /// Building the network or reading a tensor back from the device failed.
    #[error("{0}")]
    Network(String),
    /// Writing a file atomically failed.
    #[error(transparent)]
    Data(#[from] medseg_data::DataError),
}

fn prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl CheckpointError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn format(problem: impl Into<String>) -> Self {
        CheckpointError::Format {
            path: None,
            problem: problem.into(),
        }
    }

    fn mismatch(problem: impl Into<String>) -> Self {
        CheckpointError::Mismatch {
            path: None,
            problem: problem.into(),
        }
    }

    /// The same error, naming `file` when it names none yet.
    pub fn at(self, file: &Path) -> Self {
        match self {
            CheckpointError::Format {
                path: None,
                problem,
            } => CheckpointError::Format {
                path: Some(file.to_path_buf()),
                problem,
            },
            CheckpointError::Mismatch {
                path: None,
                problem,
            } => CheckpointError::Mismatch {
                path: Some(file.to_path_buf()),
                problem,
            },
            other => other,
        }
    }
}

/// Callers whose own errors are still text (the trainer, the command line) take it as text.
impl From<CheckpointError> for String {
    fn from(e: CheckpointError) -> String {
        e.to_string()
    }
}

type Result<T, E = CheckpointError> = std::result::Result<T, E>;

fn flat(p: &AnyParam) -> Result<(Vec<usize>, Vec<f32>)> {
    let data = match p {
        AnyParam::R1(p) => p.val().into_data(),
        AnyParam::R2(p) => p.val().into_data(),
        AnyParam::R3(p) => p.val().into_data(),
        AnyParam::R4(p) => p.val().into_data(),
    };
    let shape = data.shape().to_vec();
    let v = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| CheckpointError::Network(format!("reading a parameter: {e:?}")))?;
    Ok((shape, v))
}

/// `dir/tag.safetensors`: parameters, running statistics and `extra` (name, shape, values).
fn write_weights(
    dir: &Path,
    tag: &str,
    net: &mut Net,
    extra: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
    let mut named = Vec::new();
    net.named_params("", &mut named);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (n, p) in &named {
        let (shape, v) = flat(p)?;
        tensors.push((n.clone(), shape, bytemuck::cast_slice(&v).to_vec()));
    }
    for (n, t) in net.named_buffers("") {
        let shape = t.dims().to_vec();
        let v = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| CheckpointError::Network(format!("reading {n}: {e:?}")))?;
        tensors.push((n, shape, bytemuck::cast_slice(&v).to_vec()));
    }
    for (n, shape, v) in extra {
        tensors.push((n, shape, bytemuck::cast_slice(&v).to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| CheckpointError::format(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| CheckpointError::format(e.to_string()))?;
    let weights = dir.join(format!("{tag}.safetensors"));
    medseg_data::atomic::write_atomic(&weights, true, |w| w.write_all(&bytes))?;
    Ok(())
}

/// Writes `dir/tag.safetensors` and `dir/tag.json` (the network, how its input is prepared,
/// the training settings and the epoch's numbers).
pub fn save(
    dir: &Path,
    tag: &str,
    net: &mut Net,
    cfg: &TrainConfig,
    report: &EpochReport,
) -> Result<()> {
    write_weights(dir, tag, net, Vec::new())?;
    let input = InputSpec {
        size: cfg.size,
        ..cfg.input.clone()
    };
    let meta = serde_json::json!({
        "format": "medseg checkpoint 1",
        "model": model_name(&cfg.net),
        "config": cfg.net.to_json(),
        "weights": format!("{tag}.safetensors"),
        "input": input,
        "train": {
            "epochs": cfg.epochs, "batch": cfg.batch, "size": cfg.size, "seed": cfg.seed,
            "augment": cfg.augment, "drop_path": cfg.drop_path, "lr": cfg.schedule.max_lr,
        },
        "epoch": report,
    });
    let body =
        serde_json::to_vec_pretty(&meta).map_err(|e| CheckpointError::format(e.to_string()))?;
    medseg_data::atomic::write_atomic(&dir.join(format!("{tag}.json")), true, |w| {
        w.write_all(&body)
    })?;
    Ok(())
}

/// Stored tensors by name: shape and f32 values.
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Tensors of a safetensors file as f32, by name (stored as f32, or f16/bf16/f64 as the
/// compact bundled models are).
pub fn read_tensors(path: &Path) -> Result<Tensors> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, e))?;
    tensors_from_bytes(&bytes).map_err(|e| e.at(path))
}

/// Tensors of safetensors bytes as f32, by name; any non-float tensor refuses the file.
pub fn tensors_from_bytes(bytes: &[u8]) -> Result<Tensors> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| CheckpointError::format(format!("not a safetensors file ({e})")))?;
    let mut out = HashMap::new();
    for (name, t) in st.tensors() {
        let v = decode_float(&t).ok_or_else(|| {
            CheckpointError::format(format!(
                "{name} is {:?}; medseg checkpoints hold floating-point tensors",
                t.dtype()
            ))
        })?;
        out.insert(name, (t.shape().to_vec(), v));
    }
    Ok(out)
}

/// Writes `tensors` as safetensors to `path` (atomically), as f32 or rounded to f16.
pub fn write_tensors(path: &Path, tensors: &Tensors, half: bool) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .into_iter()
        .map(|n| {
            let (shape, v) = &tensors[n];
            let bytes = if half {
                v.iter()
                    .flat_map(|&x| crate::pth::f32_to_f16(x).to_le_bytes())
                    .collect()
            } else {
                bytemuck::cast_slice(v).to_vec()
            };
            (n.clone(), shape.clone(), bytes)
        })
        .collect();
    let dtype = if half {
        safetensors::Dtype::F16
    } else {
        safetensors::Dtype::F32
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = encoded
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| CheckpointError::format(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| CheckpointError::format(e.to_string()))?;
    medseg_data::atomic::write_atomic(path, true, |w| w.write_all(&bytes))?;
    Ok(())
}

/// The values of a floating-point safetensors tensor as f32; None for other dtypes.
fn decode_float(t: &safetensors::tensor::TensorView) -> Option<Vec<f32>> {
    let d = t.data();
    Some(match t.dtype() {
        safetensors::Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        safetensors::Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| crate::pth::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        safetensors::Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        _ => return None,
    })
}

/// Weights from a checkpoint's tensors. Missing names and wrong shapes are collected (the
/// network gets zeros there so loading can go on and report them all); [`StoredWeights::check`]
/// then refuses the checkpoint, listing the first problems, and also names stored tensors the
/// configuration did not use.
pub struct StoredWeights {
    tensors: Tensors,
    used: HashSet<String>,
    problems: Vec<String>,
    /// Stored names that are not weights (e.g. optimiser state) and may stay unused.
    ignore_prefix: Option<String>,
    /// Stored names containing one of these may stay unused (modules an official checkpoint
    /// holds but the network never calls).
    ignore_containing: Vec<&'static str>,
}

impl StoredWeights {
    pub fn new(tensors: Tensors) -> Self {
        StoredWeights {
            tensors,
            used: HashSet::new(),
            problems: Vec::new(),
            ignore_prefix: None,
            ignore_containing: Vec::new(),
        }
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        match self.tensors.get(name) {
            None => {
                self.problems.push(format!(
                    "{name}: missing (the configuration needs {shape:?})"
                ));
                vec![0.0; n]
            }
            Some((s, _)) if s != shape => {
                self.problems.push(format!(
                    "{name}: stored {s:?}, the configuration needs {shape:?}"
                ));
                vec![0.0; n]
            }
            Some((_, v)) => {
                self.used.insert(name.to_string());
                v.clone()
            }
        }
    }

    /// Ok when every needed tensor was there with its shape and nothing stored was left over.
    pub fn check(&self, what: &str) -> Result<()> {
        let mut problems = self.problems.clone();
        let mut unused: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .filter(|k| {
                !self
                    .ignore_prefix
                    .as_ref()
                    .is_some_and(|p| k.starts_with(p.as_str()))
                    && !self.ignore_containing.iter().any(|p| k.contains(p))
            })
            .collect();
        unused.sort();
        problems.extend(
            unused
                .iter()
                .map(|k| format!("{k}: stored but not part of this network")),
        );
        if problems.is_empty() {
            return Ok(());
        }
        let n = problems.len();
        problems.truncate(8);
        Err(CheckpointError::mismatch(format!(
            "{what} does not match the network ({n} problems; nothing was loaded):\n  {}{}",
            problems.join("\n  "),
            if n > 8 { "\n  …" } else { "" }
        )))
    }
}

impl WeightSource for StoredWeights {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(self.take(name, shape))
    }
}

/// The network configuration written by [`save`].
pub fn config_from_json(meta: &serde_json::Value) -> Result<NetConfig> {
    NetConfig::from_json(meta["model"].as_str(), &meta["config"]).map_err(CheckpointError::format)
}

/// Loads a network saved by [`save`] (`tag.json` + its safetensors) onto `device`; refuses a
/// checkpoint whose tensors do not match its configuration.
pub fn load(json: &Path, device: &Device) -> Result<(Net, serde_json::Value)> {
    let meta = read_meta(json)?;
    let weights = json.with_file_name(weights_name(&meta).map_err(|e| e.at(json))?);
    let tensors = read_tensors(&weights)?;
    let net = load_tensors(&meta, tensors, device).map_err(|e| e.at(&weights))?;
    Ok((net, meta))
}

/// The weights file a checkpoint's JSON names.
fn weights_name(meta: &serde_json::Value) -> Result<&str> {
    meta["weights"]
        .as_str()
        .ok_or_else(|| CheckpointError::format("no \"weights\" file named"))
}

/// A checkpoint's JSON.
pub fn read_meta(json: &Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(json).map_err(|e| CheckpointError::io(json, e))?)
        .map_err(|e| CheckpointError::format(format!("not JSON ({e})")).at(json))
}

/// The network a checkpoint's JSON describes, with `tensors` as its weights.
pub fn load_tensors(meta: &serde_json::Value, tensors: Tensors, device: &Device) -> Result<Net> {
    let cfg = config_from_json(meta)?;
    let mut src = StoredWeights::new(tensors);
    src.ignore_prefix = Some("adam.".into());
    let net = Net::load(&cfg, &mut Loader::new(&mut src, device.clone(), ""))
        .map_err(CheckpointError::Network)?;
    src.check("the weights")?;
    Ok(net)
}

/// The float tensors of an official checkpoint (`.pth`/`.pt` zip or `.safetensors`) under
/// the official names, `module.` and `vmunet.` prefixes taken off.
pub fn read_official(path: &Path) -> Result<Tensors> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, e))?;
    let raw = if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
        crate::pth::read_pth(&bytes).map_err(CheckpointError::format)
    } else {
        float_tensors(&bytes)
    }
    .map_err(|e| e.at(path))?;
    let mut tensors = Tensors::new();
    for (name, t) in raw {
        let short = name.strip_prefix("module.").unwrap_or(&name);
        let short = short.strip_prefix("vmunet.").unwrap_or(short);
        tensors.insert(short.to_string(), t);
    }
    Ok(tensors)
}

/// Weights under the official names — the authors' released checkpoints, or any state dict of
/// the official code — from a PyTorch `.pth`/`.pt` (zip format, read by [`crate::pth`]) or a
/// `.safetensors` file, into a network of configuration `cfg` on `device`. A `module.`
/// (DataParallel) and the `vmunet.` prefix are taken off; integer buffers
/// (`num_batches_tracked`) and SA-UMamba's never-called iAFF/DySample modules are ignored.
/// Anything missing, misshapen or left over refuses the file, listing the first problems.
pub fn load_official(path: &Path, cfg: &NetConfig, device: &Device) -> Result<Net> {
    let what = path.display().to_string();
    let tensors = read_official(path)?;
    let mut src = StoredWeights::new(tensors);
    src.ignore_containing = vec!["iaffs.", ".new_upsample."];
    let net = Net::load(cfg, &mut Loader::new(&mut src, device.clone(), ""))
        .map_err(CheckpointError::Network)?;
    src.check(&what)?;
    Ok(net)
}

/// The floating-point tensors of a safetensors file as f32 (integer ones left out).
fn float_tensors(bytes: &[u8]) -> Result<Tensors> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        CheckpointError::format(format!(
            "neither a PyTorch zip nor a safetensors file ({e})"
        ))
    })?;
    Ok(st
        .tensors()
        .into_iter()
        .filter_map(|(name, t)| decode_float(&t).map(|v| (name, (t.shape().to_vec(), v))))
        .collect())
}

/// Writes the training state to `dir`: the weights with the AdamW moments in
/// `state-E-S.safetensors` (E, S: the epoch and step it continues at) and `state.json` naming
/// that file. The JSON is written last and replaces the previous one in one rename, so a run
/// killed at any moment leaves a complete state — the new one or the previous one, whose
/// weights file is deleted only after the new JSON is in place.
pub fn save_state(dir: &Path, net: &mut Net, cfg: &TrainConfig, state: &TrainState) -> Result<()> {
    let mut extra = Vec::new();
    for (name, m) in &state.opt.moments {
        for (k, t) in [("m", &m.m), ("v", &m.v)] {
            let v = t
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| CheckpointError::Network(format!("reading adam.{k}.{name}: {e:?}")))?;
            extra.push((format!("adam.{k}.{name}"), vec![v.len()], v));
        }
    }
    let tag = format!("state-{}-{}", state.next_epoch, state.next_step);
    write_weights(dir, &tag, net, extra)?;
    let meta = serde_json::json!({
        "format": "medseg training state 1",
        "model": model_name(&cfg.net),
        "config": cfg.net.to_json(),
        "weights": format!("{tag}.safetensors"),
        "input": InputSpec { size: cfg.size, ..cfg.input.clone() },
        "train": {
            "epochs": cfg.epochs, "batch": cfg.batch, "size": cfg.size, "seed": cfg.seed,
            "augment": cfg.augment, "lr": cfg.schedule.max_lr,
        },
        "next_epoch": state.next_epoch,
        "next_step": state.next_step,
        "adam_step": state.opt.step,
        "shuffle_rng": state.shuffle_rng.to_string(),
        "augment_rng": state.augment_rng.to_string(),
        "summary": state.summary,
        "epoch": state.summary.epochs.last(),
    });
    let body =
        serde_json::to_vec_pretty(&meta).map_err(|e| CheckpointError::format(e.to_string()))?;
    medseg_data::atomic::write_atomic(&dir.join("state.json"), true, |w| w.write_all(&body))?;
    // Older states' weights (and the unversioned name of earlier builds) are no longer named.
    let keep = format!("{tag}.safetensors");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let stale = name.starts_with("state") && name.ends_with(".safetensors") && name != keep;
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Continues a run saved by [`save_state`] in `dir`: the network, the optimiser, the epoch,
/// the step and the generators. The training settings must match the saved ones.
pub fn load_state(dir: &Path, cfg: &TrainConfig, device: &Device) -> Result<(Net, TrainState)> {
    let json = dir.join("state.json");
    let meta = read_meta(&json)?;
    let saved = &meta["train"];
    // The epoch count sets the cosine schedule, so it must match too.
    for (k, want) in [
        ("epochs", cfg.epochs as u64),
        ("batch", cfg.batch as u64),
        ("size", cfg.size as u64),
        ("seed", cfg.seed),
    ] {
        if saved[k].as_u64() != Some(want) {
            return Err(CheckpointError::mismatch(format!(
                "the run was started with {k} {}, not {want}",
                saved[k]
            ))
            .at(&json));
        }
    }
    if let Some(lr) = saved["lr"].as_f64() {
        if (lr - cfg.schedule.max_lr).abs() > 1e-12 * lr.abs() {
            return Err(CheckpointError::mismatch(format!(
                "the run was started with lr {lr}, not {}",
                cfg.schedule.max_lr
            ))
            .at(&json));
        }
    }
    if config_from_json(&meta).map_err(|e| e.at(&json))? != cfg.net {
        return Err(CheckpointError::mismatch("saved for another network configuration").at(&json));
    }
    let weights = dir.join(weights_name(&meta).map_err(|e| e.at(&json))?);
    let mut tensors = read_tensors(&weights)?;
    let mut opt = GpuAdamW::new(cfg.optimizer);
    let missing = |k: &str| CheckpointError::format(format!("{k} missing")).at(&json);
    opt.step = meta["adam_step"]
        .as_u64()
        .ok_or_else(|| missing("adam_step"))? as u32;
    let adam: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with("adam."))
        .cloned()
        .collect();
    let mut moments: Tensors = adam
        .iter()
        .filter_map(|k| tensors.remove_entry(k))
        .collect();
    let mut net = load_tensors(&meta, tensors, device).map_err(|e| e.at(&weights))?;
    let mut named = Vec::new();
    net.named_params("", &mut named);
    for (name, _) in &named {
        let mut take = |k: &str| -> Option<Tensor<1>> {
            moments
                .remove(&format!("adam.{k}.{name}"))
                .map(|(s, v)| Tensor::from_data(TensorData::new(v, s), &device.clone().inner()))
        };
        if let (Some(m), Some(v)) = (take("m"), take("v")) {
            opt.moments
                .insert(name.clone(), super::optim::Moments { m, v });
        }
    }
    let num = |k: &str| -> Result<u64> {
        meta[k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| missing(k))
    };
    let mut summary: TrainSummary = serde_json::from_value(meta["summary"].clone())
        .map_err(|e| CheckpointError::format(format!("summary: {e}")).at(&json))?;
    // Step losses are f32 read-backs; JSON's decimal round trip may move them by an f64 ulp,
    // and snapping back to f32 restores them exactly (a resumed epoch's mean then matches).
    for l in summary.step_losses.iter_mut() {
        *l = *l as f32 as f64;
    }
    let state = TrainState {
        opt,
        next_epoch: meta["next_epoch"]
            .as_u64()
            .ok_or_else(|| missing("next_epoch"))? as usize,
        next_step: meta["next_step"].as_u64().unwrap_or(0) as usize,
        shuffle_rng: num("shuffle_rng")?,
        augment_rng: num("augment_rng")?,
        summary,
    };
    Ok((net, state))
}
