//! The memory budget of every load. A loader works out from the header how many bytes the
//! decoded samples and their f32 copy will need — with checked arithmetic, before allocating —
//! and refuses the file when that passes the budget or an axis passes [`MAX_AXIS`]. Files are
//! read with a running cap, so a compressed stream, a device file or a link to one cannot make
//! us read without end.
//!
//! The budget is half the machine's physical memory (Linux), 8 GiB where that is unknown, or
//! 1 GiB on 32-bit targets such as the browser; `MEDSEG_MEMORY_LIMIT` (bytes, or with a K/M/G/T
//! suffix) overrides it for the process and [`with_budget`] for one thread.

use crate::error::{DataError, Result};
use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

/// The longest axis any loader accepts (a 2²⁰-pixel row is already far past any scanner).
pub const MAX_AXIS: u64 = 1 << 20;

thread_local! {
    static THREAD_BUDGET: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Parses `4096`, `512M`, `8G`, `1.5T` (binary multiples).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    let bytes = v * mult as f64;
    (v.is_finite() && v > 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The process-wide budget in bytes (see the module documentation).
pub fn process_budget() -> u64 {
    static BUDGET: OnceLock<u64> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        if let Some(b) = std::env::var("MEDSEG_MEMORY_LIMIT")
            .ok()
            .and_then(|s| parse_bytes(&s))
        {
            return b;
        }
        if cfg!(not(target_pointer_width = "64")) {
            return 1 << 30;
        }
        physical_memory().map_or(8 << 30, |m| m / 2)
    })
}

/// The budget in force on this thread.
pub fn budget() -> u64 {
    THREAD_BUDGET
        .with(|b| b.get())
        .unwrap_or_else(process_budget)
}

/// Runs `f` with the budget set to `bytes` on this thread (a job that knows better, a test).
pub fn with_budget<T>(bytes: u64, f: impl FnOnce() -> T) -> T {
    let before = THREAD_BUDGET.with(|b| b.replace(Some(bytes)));
    let out = f();
    THREAD_BUDGET.with(|b| b.set(before));
    out
}

/// The product of `dims`, or None past u128.
pub fn product(dims: &[u64]) -> Option<u128> {
    dims.iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
}

fn too_large(path: &Path, what: &str, bytes: u128) -> DataError {
    DataError::TooLarge {
        path: path.to_path_buf(),
        what: what.to_string(),
        bytes,
        limit: budget(),
    }
}

/// Refuses `parts` (byte counts that will be held at once) when their sum passes the budget.
pub fn check(path: &Path, what: &str, parts: &[Option<u128>]) -> Result<()> {
    let total = parts
        .iter()
        .try_fold(0u128, |acc, p| p.and_then(|p| acc.checked_add(p)));
    match total {
        Some(t) if t <= budget() as u128 => Ok(()),
        Some(t) => Err(too_large(path, what, t)),
        None => Err(too_large(path, what, u128::MAX)),
    }
}

/// Refuses an axis longer than [`MAX_AXIS`].
pub fn check_axes(path: &Path, format: &'static str, dims: &[u64]) -> Result<()> {
    match dims.iter().position(|&d| d > MAX_AXIS) {
        Some(i) => Err(DataError::malformed(
            path,
            format,
            format!(
                "axis {} has {} samples, more than the {MAX_AXIS} an image may have",
                i + 1,
                dims[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Reads a whole file of at most the budget: a folder, a device, a pipe or a link to one is
/// refused up front, and the read stops one byte past the budget whatever the file claims.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::Invalid(format!(
            "{}: not a regular file (a folder, device or pipe)",
            path.display()
        )));
    }
    let limit = budget();
    if meta.len() > limit {
        return Err(too_large(path, "reading the file", meta.len() as u128));
    }
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, "reading the file", bytes.len() as u128));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("8g"), Some(8 << 30));
        assert_eq!(parse_bytes("1.5K"), Some(1536));
        for bad in ["", "G", "-1G", "abc", "0", "1e30T"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn products_past_u128_are_none_not_wrapped() {
        assert_eq!(product(&[2, 3, 4]), Some(24));
        assert_eq!(product(&[u64::MAX, u64::MAX, 2]), None);
        let p = Path::new("x.nii");
        let e = with_budget(100, || check(p, "the image", &[product(&[u64::MAX; 3])]));
        assert!(e.unwrap_err().to_string().contains("over the limit"));
        assert!(with_budget(100, || check(p, "it", &[Some(60), Some(40)])).is_ok());
        assert!(with_budget(100, || check(p, "it", &[Some(60), Some(41)])).is_err());
    }

    #[test]
    fn the_thread_budget_is_restored_after_use() {
        let before = budget();
        with_budget(7, || assert_eq!(budget(), 7));
        assert_eq!(budget(), before);
    }
}
