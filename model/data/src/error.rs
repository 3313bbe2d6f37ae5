//! One error type for every loader and writer. Each variant names the file and the problem, so
//! the app and the CLI can show it as it is.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is of a known kind but its contents break the format.
    #[error("{path}: {format}: {problem}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        problem: String,
    },
    /// A valid file uses something we do not read (a datatype, a transfer syntax, ...).
    #[error("{path}: {format}: not supported: {what}")]
    Unsupported {
        path: PathBuf,
        format: &'static str,
        what: String,
    },
    /// The declared size would need more memory than allowed; nothing was allocated.
    #[error("{path}: {what} would need {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        path: PathBuf,
        what: String,
        bytes: u128,
        limit: u64,
    },
    #[error(
        "{path}: not a file format medseg reads (NIfTI .nii/.nii.gz, DICOM, PNG, JPEG, BMP, TIFF)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: already exists; pass overwrite to replace it")]
    Exists { path: PathBuf },
    /// Two things that must agree (an image and its mask, a prediction and its reference) do not.
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(path: &Path, format: &'static str, problem: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.to_path_buf(),
            format,
            problem: problem.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, format: &'static str, what: impl Into<String>) -> Self {
        DataError::Unsupported {
            path: path.to_path_buf(),
            format,
            what: what.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Largest decoded volume (as f32 voxels) a loader will allocate.
#[cfg(target_pointer_width = "64")]
pub const MAX_DECODED_BYTES: u64 = 16 << 30;
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// Checks that `count` elements of `elem_bytes` each fit under [`MAX_DECODED_BYTES`] and returns
/// the count as usize. Products are formed in u128 so absurd headers cannot overflow.
pub(crate) fn checked_len(path: &Path, what: &str, dims: &[u64], elem_bytes: u64) -> Result<usize> {
    let count: u128 = dims.iter().map(|&d| d as u128).product();
    let bytes = count * elem_bytes as u128;
    if bytes > MAX_DECODED_BYTES as u128 {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what: what.to_string(),
            bytes,
            limit: MAX_DECODED_BYTES,
        });
    }
    Ok(count as usize)
}
