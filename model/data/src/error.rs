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
    /// The declared size would need more memory than the budget allows (see [`crate::budget`]);
    /// nothing was allocated.
    #[error(
        "{path}: {what} would need {} bytes, over the limit of {limit} bytes (the memory budget; MEDSEG_MEMORY_LIMIT changes it)",
        if *bytes == u128::MAX { "more than 2^128".to_string() } else { bytes.to_string() }
    )]
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
