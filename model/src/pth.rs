//! Reading PyTorch checkpoints (`torch.save` of a state dict, the zip format PyTorch has written
//! since 1.6): a small stored-entry zip reader and the subset of the pickle machine that state
//! dicts use (dicts, `OrderedDict`, tuples, lists, scalars, strings, persistent storage ids,
//! `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`). Nothing in the file is executed:
//! any other callable is kept as an opaque value and never run. Tensors come out as f32 in
//! row-major order, whatever their strides and storage offset; f64/f16/bf16 are converted,
//! integer tensors (e.g. BatchNorm's `num_batches_tracked`) are left out.

use std::collections::HashMap;

/// Name → (shape, f32 values), the same map the safetensors reader returns.
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The tensors of a PyTorch checkpoint. A state dict at the top level or under one of the
/// usual keys (`state_dict`, `model_state_dict`, `model`, `net`) is found; names keep their
/// dotted PyTorch form.
pub fn read_pth(bytes: &[u8]) -> Result<Tensors, String> {
    if bytes.first() == Some(&0x80) {
        return Err(
            "a legacy (pre-1.6, non-zip) PyTorch file; re-save it with a current \
                    torch.save or convert it to .safetensors"
                .into(),
        );
    }
    let zip = Zip::open(bytes)?;
    let pkl_name = zip
        .names()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .ok_or("no data.pkl in the archive: not a PyTorch checkpoint")?
        .to_string();
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let value = Unpickler::new(zip.entry(&pkl_name)?).run()?;
    let dict = state_dict(&value).ok_or(
        "the checkpoint holds no state dict (a dict of tensors at the top level or under \
         'state_dict' / 'model_state_dict' / 'model' / 'net')",
    )?;
    let mut out = Tensors::new();
    for (k, v) in dict {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let Some(values) = t.read(&zip, &root)? else {
            continue;
        };
        out.insert(name.clone(), (t.shape.clone(), values));
    }
    if out.is_empty() {
        return Err("the state dict holds no floating-point tensors".into());
    }
    Ok(out)
}

fn state_dict(v: &Value) -> Option<&Vec<(Value, Value)>> {
    let Value::Dict(items) = v else { return None };
    if items.iter().any(|(_, x)| matches!(x, Value::Tensor(_))) {
        return Some(items);
    }
    ["state_dict", "model_state_dict", "model", "net"]
        .iter()
        .find_map(|key| {
            items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .and_then(|(_, x)| state_dict(x))
        })
}

/// Stored (uncompressed) entries of a zip archive, as PyTorch writes them.
struct Zip<'a> {
    bytes: &'a [u8],
    /// name → (data offset, size)
    entries: Vec<(String, usize, usize)>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| "truncated zip archive".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| "truncated zip archive".to_string())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| "truncated zip archive".to_string())
}

impl<'a> Zip<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, String> {
        if !bytes.starts_with(b"PK\x03\x04") {
            return Err("not a zip archive (PyTorch checkpoints are zip files)".into());
        }
        // End of central directory: the last PK\x05\x06 within the final 64 KiB + 22 bytes.
        let from = bytes.len().saturating_sub(65_557);
        let eocd = (from..bytes.len().saturating_sub(21))
            .rev()
            .find(|&i| bytes[i..].starts_with(b"PK\x05\x06"))
            .ok_or("zip archive without an end-of-directory record")?;
        let mut count = u16_at(bytes, eocd + 10)? as u64;
        let mut dir = u32_at(bytes, eocd + 16)? as u64;
        if (count == 0xFFFF || dir == 0xFFFF_FFFF) && eocd >= 20 {
            // Zip64: the locator just before the record points at the zip64 record.
            let loc = eocd - 20;
            if bytes[loc..].starts_with(b"PK\x06\x07") {
                let rec = u64_at(bytes, loc + 8)? as usize;
                if !bytes
                    .get(rec..)
                    .is_some_and(|b| b.starts_with(b"PK\x06\x06"))
                {
                    return Err("broken zip64 directory record".into());
                }
                count = u64_at(bytes, rec + 32)?;
                dir = u64_at(bytes, rec + 48)?;
            }
        }
        let mut entries = Vec::new();
        let mut at = dir as usize;
        for _ in 0..count {
            if !bytes
                .get(at..)
                .is_some_and(|b| b.starts_with(b"PK\x01\x02"))
            {
                return Err("broken zip central directory".into());
            }
            let method = u16_at(bytes, at + 10)?;
            let mut size = u32_at(bytes, at + 24)? as u64;
            let name_len = u16_at(bytes, at + 28)? as usize;
            let extra_len = u16_at(bytes, at + 30)? as usize;
            let comment_len = u16_at(bytes, at + 32)? as usize;
            let mut local = u32_at(bytes, at + 42)? as u64;
            let name = bytes
                .get(at + 46..at + 46 + name_len)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .ok_or("truncated zip archive")?;
            // Zip64 extra field: the 64-bit values present are those whose 32-bit field is full.
            let extra_at = at + 46 + name_len;
            let mut e = extra_at;
            while e + 4 <= extra_at + extra_len {
                let (id, len) = (u16_at(bytes, e)?, u16_at(bytes, e + 2)? as usize);
                if id == 1 {
                    let mut f = e + 4;
                    if size == 0xFFFF_FFFF {
                        size = u64_at(bytes, f)?;
                        f += 8;
                    }
                    if u32_at(bytes, at + 20)? == 0xFFFF_FFFF {
                        f += 8;
                    }
                    if local == 0xFFFF_FFFF {
                        local = u64_at(bytes, f)?;
                    }
                }
                e += 4 + len;
            }
            if method != 0 {
                return Err(format!(
                    "zip entry {name} is compressed (method {method}); PyTorch stores entries uncompressed"
                ));
            }
            let local = local as usize;
            if !bytes
                .get(local..)
                .is_some_and(|b| b.starts_with(b"PK\x03\x04"))
            {
                return Err(format!("zip entry {name}: broken local header"));
            }
            let data = local
                + 30
                + u16_at(bytes, local + 26)? as usize
                + u16_at(bytes, local + 28)? as usize;
            let size = size as usize;
            if data.checked_add(size).is_none_or(|end| end > bytes.len()) {
                return Err(format!("zip entry {name} runs past the end of the file"));
            }
            entries.push((name, data, size));
            at = extra_at + extra_len + comment_len;
        }
        Ok(Zip { bytes, entries })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _, _)| n.as_str())
    }

    fn entry(&self, name: &str) -> Result<&'a [u8], String> {
        self.entries
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, at, len)| &self.bytes[at..at + len])
            .ok_or_else(|| format!("the archive has no entry {name}"))
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage: String,
    dtype: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    /// Values in row-major order, or None for integer/bool tensors.
    fn read(&self, zip: &Zip, root: &str) -> Result<Option<Vec<f32>>, String> {
        let (size, decode): (usize, fn(&[u8]) -> f32) = match self.dtype.as_str() {
            "FloatStorage" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            "DoubleStorage" => (8, |b| f64::from_le_bytes(b.try_into().expect("8")) as f32),
            "HalfStorage" => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
            "BFloat16Storage" => (2, |b| {
                f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
            }),
            "LongStorage" | "IntStorage" | "ShortStorage" | "CharStorage" | "ByteStorage"
            | "BoolStorage" => return Ok(None),
            other => return Err(format!("tensor storage of type {other} is not supported")),
        };
        let raw = zip.entry(&format!("{root}data/{}", self.storage))?;
        let n: usize = self.shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..n {
            let elem = self.offset
                + index
                    .iter()
                    .zip(&self.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let b = raw
                .get(elem * size..(elem + 1) * size)
                .ok_or_else(|| format!("tensor in storage {} reads past its end", self.storage))?;
            out.push(decode(b));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Some(out))
    }
}

/// IEEE half to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1F) as i32;
    let frac = (h & 0x3FF) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// f32 to IEEE half, rounding to nearest (ties to even); overflow gives ±infinity, NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xFF) as i32;
    let man = bits & 0x7F_FFFF;
    if exp == 0xFF {
        return sign | 0x7C00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the full significand into place and round.
        if e < -10 {
            return sign;
        }
        let full = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = full >> shift;
        let rest = full & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = rest > mid || (rest == mid && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1FFF;
    let round = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
    // A carry out of the significand correctly bumps the exponent (up to infinity).
    sign | (half + round as u32) as u16
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        dtype: String,
    },
    Tensor(TensorRef),
    /// The result of any other callable: never run, kept opaque.
    Opaque,
    Mark,
}

struct Unpickler<'a> {
    data: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler {
            data,
            at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .data
            .get(self.at..self.at + n)
            .ok_or("data.pkl ends early")?;
        self.at += n;
        Ok(s)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.at.min(self.data.len())..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("data.pkl ends early")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    /// Everything above the last mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle mark missing")?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.take(1)?[0] as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                b'J' => {
                    let b = self.take(4)?;
                    self.stack
                        .push(Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64));
                }
                0x8a => {
                    let n = self.take(1)?[0] as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err("pickle integer wider than 64 bits".into());
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack
                        .push(Value::Float(f64::from_be_bytes(b.try_into().expect("8"))));
                }
                b'X' | b'T' => {
                    let b = self.take(4)?;
                    let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                0x8c | b'U' => {
                    let n = self.take(1)?[0] as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                b'q' => {
                    let k = self.take(1)?[0] as u32;
                    let v = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let b = self.take(4)?;
                    let k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let v = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    let v = self.stack.last().cloned().ok_or("pickle stack underflow")?;
                    self.memo.insert(k, v);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.take(1)?[0] as u32
                    } else {
                        let b = self.take(4)?;
                        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    };
                    let v = self.memo.get(&k).cloned().ok_or("pickle memo key missing")?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL without module and name".into()),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks_exact(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(pairs));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top_mut()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top_mut()? {
                        l.extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top_mut()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top_mut()? {
                        d.extend(items.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.stack.push(call(func, args)?);
                }
                b'b' => {
                    // BUILD: object state (e.g. an OrderedDict's `_metadata`); not needed.
                    self.pop()?;
                }
                other => {
                    return Err(format!(
                        "data.pkl uses pickle opcode 0x{other:02x} at byte {}, which a state dict does not need",
                        self.at - 1
                    ))
                }
            }
        }
    }
}

/// A persistent id: ('storage', <storage type>, key, location, numel).
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.as_slice() {
        [Value::Str(kind), Value::Global(_, dtype), Value::Str(key), ..] if kind == "storage" => {
            Ok(Value::Storage {
                key: key.clone(),
                dtype: dtype.clone(),
            })
        }
        _ => Err(format!("unsupported persistent id {t:?}")),
    }
}

fn usizes(v: &Value) -> Option<Vec<usize>> {
    let Value::Tuple(t) = v else { return None };
    t.iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Some(*i as usize),
            _ => None,
        })
        .collect()
}

fn call(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Opaque);
    };
    let Value::Tuple(args) = args else {
        return Ok(Value::Opaque);
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            match args.as_slice() {
                [Value::Storage { key, dtype }, Value::Int(offset), shape, stride, ..] => {
                    let shape = usizes(shape).ok_or("tensor shape is not a tuple of sizes")?;
                    let stride = usizes(stride).ok_or("tensor stride is not a tuple of sizes")?;
                    if shape.len() != stride.len() || *offset < 0 {
                        return Err(format!("tensor with shape {shape:?} and stride {stride:?}"));
                    }
                    Value::Tensor(TensorRef {
                        storage: key.clone(),
                        dtype: dtype.clone(),
                        offset: *offset as usize,
                        shape,
                        stride,
                    })
                }
                _ => return Err("_rebuild_tensor_v2 with unexpected arguments".into()),
            }
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::Opaque)
        }
        ("collections", "OrderedDict") => Value::Dict(Vec::new()),
        _ => Value::Opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite half survives f16 → f32 → f16, and f32 values between two halves round to
    /// the nearer (ties to the even one), checked against the exact f64 distances.
    #[test]
    fn f32_to_f16_rounds_to_nearest_even() {
        for h in 0u16..=0xFFFF {
            let x = f16_to_f32(h);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan());
                continue;
            }
            assert_eq!(f32_to_f16(x), h, "{h:#06x} ({x})");
        }
        let mut state = 12345u64;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f32::from_bits((state >> 32) as u32);
            if !x.is_finite() || x.abs() > 65504.0 {
                continue;
            }
            let h = f32_to_f16(x);
            let got = (f16_to_f32(h) as f64 - x as f64).abs();
            for n in [h.wrapping_sub(1), h.wrapping_add(1)] {
                let other = f16_to_f32(n);
                if other.is_finite() && (n & 0x7FFF) != 0x7C00 && (n ^ h) & 0x8000 == 0 {
                    let d = (other as f64 - x as f64).abs();
                    assert!(
                        got < d || (got == d && h & 1 == 0),
                        "{x}: {h:#06x} vs {n:#06x}"
                    );
                }
            }
        }
        assert_eq!(f32_to_f16(1e6), 0x7C00);
        assert_eq!(f32_to_f16(-1e-9), 0x8000);
    }

    #[test]
    fn refuses_what_is_not_a_checkpoint() {
        assert!(read_pth(b"hello").unwrap_err().contains("not a zip"));
        assert!(read_pth(&[0x80, 2, 0x8a]).unwrap_err().contains("legacy"));
        assert!(read_pth(b"PK\x03\x04 short")
            .unwrap_err()
            .contains("end-of-directory"));
    }

    /// A state dict saved by PyTorch itself (`torch.save(model.state_dict())` of two Linear
    /// layers; from burn-store's test data, MIT/Apache-2.0). Expected values were read with
    /// Python's own pickle machine and `struct` (stub classes, no torch).
    #[test]
    fn reads_a_state_dict_saved_by_pytorch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/pth/linear_state_dict.pt"
        );
        let t = read_pth(&std::fs::read(path).unwrap()).unwrap();
        let want: [(&str, &[usize], f64, [f32; 3]); 4] = [
            (
                "feature.weight",
                &[64, 3],
                0.8820846477319719,
                [0.1926915, 0.14872842, 0.070987605],
            ),
            (
                "feature.bias",
                &[64],
                0.7317822709446773,
                [0.17743884, -0.09215507, 0.022245368],
            ),
            (
                "classifier.weight",
                &[10, 64],
                -0.843957882214454,
                [-0.06854816, 0.0563559, -0.08009537],
            ),
            (
                "classifier.bias",
                &[10],
                -0.3044417032506317,
                [-0.012107571, -0.0066189026, 0.18427812],
            ),
        ];
        assert_eq!(t.len(), want.len(), "{:?}", t.keys().collect::<Vec<_>>());
        for (name, shape, sum, [first, second, last]) in want {
            let (s, v) = &t[name];
            assert_eq!(s.as_slice(), shape, "{name}");
            assert_eq!(
                [v[0], v[1], v[v.len() - 1]],
                [first, second, last],
                "{name}"
            );
            let total: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((total - sum).abs() < 1e-9, "{name}: sum {total} vs {sum}");
        }
        // A truncated copy is refused, not misread.
        let bytes = std::fs::read(path).unwrap();
        assert!(read_pth(&bytes[..bytes.len() - 100]).is_err());
    }

    #[test]
    fn strided_views_are_read_in_row_major_order() {
        // Storage 0..8; a (2, 3) view starting at element 1 with strides (1, 2) — a transposed
        // layout — holds [[1, 3, 5], [2, 4, 6]].
        let raw: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let zip = Zip {
            bytes: &raw,
            entries: vec![("a/data/0".into(), 0, raw.len())],
        };
        let t = TensorRef {
            storage: "0".into(),
            dtype: "FloatStorage".into(),
            offset: 1,
            shape: vec![2, 3],
            stride: vec![1, 2],
        };
        let v = t.read(&zip, "a/").unwrap().unwrap();
        assert_eq!(v, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let past = TensorRef { offset: 3, ..t };
        assert!(past.read(&zip, "a/").unwrap_err().contains("past its end"));
    }

    #[test]
    fn half_precision_decodes() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7C00).is_infinite());
    }
}
