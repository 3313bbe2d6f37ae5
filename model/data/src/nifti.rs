//! NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`), read and written by our own header code.
//!
//! We parse the header ourselves (both versions, either byte order) so every field is checked
//! before anything is allocated: dims, datatype/bitpix, vox_offset, pixdim and the affines. Voxel
//! data are read incrementally, so a small file that declares a huge volume fails on its real
//! length instead of reserving the declared size. The affine follows the standard's preference:
//! sform when sform_code > 0, else qform when qform_code > 0, else pixdim scaling.

use crate::atomic::write_atomic;
use crate::budget;
use crate::error::{DataError, Result};
use crate::geometry::{affine_to_quatern, det3, identity, quatern_to_affine, Geometry, Mat4};
use crate::volume::{Format, LabelMap, Source, Volume};
use flate2::read::GzDecoder;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

const FORMAT: &str = "NIfTI";

/// The header fields medseg uses, plus the raw bytes so a written file keeps everything else
/// (description, intent name, units, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiHeader {
    /// 1 or 2.
    pub version: u8,
    pub little_endian: bool,
    pub dim: [i64; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub cal_max: f64,
    pub cal_min: f64,
    pub intent_code: i32,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub xyzt_units: u8,
    /// The header as read (348 or 540 bytes); empty for a header made from scratch.
    pub raw: Vec<u8>,
}

/// Sample types of the NIfTI standard that medseg reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Rgb24,
    Rgba32,
}

impl DataType {
    pub fn from_code(code: i16) -> Option<DataType> {
        Some(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            128 => DataType::Rgb24,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            2304 => DataType::Rgba32,
            _ => return None,
        })
    }

    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::Rgb24 => 128,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
            DataType::Rgba32 => 2304,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::Rgb24 => 3,
            DataType::I32 | DataType::U32 | DataType::F32 | DataType::Rgba32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    pub fn channels(self) -> usize {
        match self {
            DataType::Rgb24 | DataType::Rgba32 => 3,
            _ => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
            DataType::Rgb24 => "RGB24",
            DataType::Rgba32 => "RGBA32",
        }
    }
}

fn describe_code(code: i16) -> String {
    match code {
        0 => "datatype 0 (unknown)".into(),
        1 => "datatype 1 (binary bits)".into(),
        32 => "datatype 32 (complex64)".into(),
        1536 => "datatype 1536 (float128)".into(),
        1792 => "datatype 1792 (complex128)".into(),
        2048 => "datatype 2048 (complex256)".into(),
        c => format!("datatype {c}"),
    }
}

/// Little helper for reading fields at fixed offsets in either byte order.
struct Fields<'a> {
    b: &'a [u8],
    le: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[at..at + N]);
        if !self.le {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.arr(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.arr(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.arr(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.arr(at)) as f64
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.arr(at))
    }
}

struct FieldsMut<'a> {
    b: &'a mut [u8],
    le: bool,
}

impl FieldsMut<'_> {
    fn put(&mut self, at: usize, mut bytes: Vec<u8>) {
        if !self.le {
            bytes.reverse();
        }
        self.b[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    fn i16(&mut self, at: usize, v: i16) {
        self.put(at, v.to_le_bytes().to_vec())
    }
    fn i32(&mut self, at: usize, v: i32) {
        self.put(at, v.to_le_bytes().to_vec())
    }
    fn i64(&mut self, at: usize, v: i64) {
        self.put(at, v.to_le_bytes().to_vec())
    }
    fn f32(&mut self, at: usize, v: f64) {
        self.put(at, (v as f32).to_le_bytes().to_vec())
    }
    fn f64(&mut self, at: usize, v: f64) {
        self.put(at, v.to_le_bytes().to_vec())
    }
}

impl NiftiHeader {
    /// A NIfTI-1 little-endian header for `geometry` with both sform and qform set (code 1).
    pub fn for_geometry(geometry: &Geometry, datatype: DataType) -> Self {
        let (quatern, qoffset, spacing, qfac) = affine_to_quatern(&geometry.world_from_voxel);
        let m = &geometry.world_from_voxel;
        let [nx, ny, nz] = geometry.dims;
        NiftiHeader {
            version: 1,
            little_endian: true,
            dim: [3, nx as i64, ny as i64, nz as i64, 1, 1, 1, 1],
            datatype: datatype.code(),
            bitpix: (datatype.size() * 8) as i16,
            pixdim: [qfac, spacing[0], spacing[1], spacing[2], 1.0, 1.0, 1.0, 1.0],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            cal_max: 0.0,
            cal_min: 0.0,
            intent_code: 0,
            qform_code: 1,
            sform_code: 1,
            quatern,
            qoffset,
            srow: [m[0], m[1], m[2]],
            xyzt_units: 2,
            raw: Vec::new(),
        }
    }

    pub fn header_size(&self) -> usize {
        if self.version == 2 {
            540
        } else {
            348
        }
    }

    /// Parses a 348- or 540-byte header. `bytes` must hold at least the first 348 bytes; for
    /// NIfTI-2 the caller supplies 540.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |p: String| DataError::malformed(path, FORMAT, p);
        if bytes.len() < 348 {
            return Err(bad(format!(
                "header is {} bytes, a NIfTI header needs 348",
                bytes.len()
            )));
        }
        let le_size = i32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let be_size = i32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let (version, le) = match (le_size, be_size) {
            (348, _) => (1u8, true),
            (_, 348) => (1, false),
            (540, _) => (2, true),
            (_, 540) => (2, false),
            _ => {
                return Err(bad(format!(
                    "sizeof_hdr is {le_size}, must be 348 (NIfTI-1) or 540 (NIfTI-2)"
                )))
            }
        };
        if version == 2 && bytes.len() < 540 {
            return Err(bad(format!(
                "NIfTI-2 header is {} bytes, needs 540",
                bytes.len()
            )));
        }
        let f = Fields { b: bytes, le };
        let h = if version == 1 {
            let magic = &bytes[344..348];
            if magic == b"ni1\0" {
                return Err(DataError::unsupported(
                    path,
                    FORMAT,
                    "a separate .hdr/.img pair (magic 'ni1'); convert it to a single .nii file",
                ));
            }
            if magic != b"n+1\0" {
                return Err(bad(format!(
                    "magic is {:?}, expected \"n+1\"",
                    String::from_utf8_lossy(magic)
                )));
            }
            let mut dim = [0i64; 8];
            let mut pixdim = [0f64; 8];
            for i in 0..8 {
                dim[i] = f.i16(40 + 2 * i) as i64;
                pixdim[i] = f.f32(76 + 4 * i);
            }
            let row = |at: usize| [f.f32(at), f.f32(at + 4), f.f32(at + 8), f.f32(at + 12)];
            NiftiHeader {
                version,
                little_endian: le,
                dim,
                datatype: f.i16(70),
                bitpix: f.i16(72),
                pixdim,
                vox_offset: f.f32(108),
                scl_slope: f.f32(112),
                scl_inter: f.f32(116),
                cal_max: f.f32(124),
                cal_min: f.f32(128),
                intent_code: f.i16(68) as i32,
                qform_code: f.i16(252) as i32,
                sform_code: f.i16(254) as i32,
                quatern: [f.f32(256), f.f32(260), f.f32(264)],
                qoffset: [f.f32(268), f.f32(272), f.f32(276)],
                srow: [row(280), row(296), row(312)],
                xyzt_units: bytes[123],
                raw: bytes[..348].to_vec(),
            }
        } else {
            let magic = &bytes[4..8];
            if magic != b"n+2\0" {
                if magic == b"ni2\0" {
                    return Err(DataError::unsupported(
                        path,
                        FORMAT,
                        "a separate .hdr/.img pair (magic 'ni2')",
                    ));
                }
                return Err(bad(format!(
                    "magic is {:?}, expected \"n+2\"",
                    String::from_utf8_lossy(magic)
                )));
            }
            let mut dim = [0i64; 8];
            let mut pixdim = [0f64; 8];
            for i in 0..8 {
                dim[i] = f.i64(16 + 8 * i);
                pixdim[i] = f.f64(104 + 8 * i);
            }
            let row = |at: usize| [f.f64(at), f.f64(at + 8), f.f64(at + 16), f.f64(at + 24)];
            NiftiHeader {
                version,
                little_endian: le,
                dim,
                datatype: f.i16(12),
                bitpix: f.i16(14),
                pixdim,
                vox_offset: f.i64(168) as f64,
                scl_slope: f.f64(176),
                scl_inter: f.f64(184),
                cal_max: f.f64(192),
                cal_min: f.f64(200),
                intent_code: f.i32(504),
                qform_code: f.i32(344),
                sform_code: f.i32(348),
                quatern: [f.f64(352), f.f64(360), f.f64(368)],
                qoffset: [f.f64(376), f.f64(384), f.f64(392)],
                srow: [row(400), row(432), row(464)],
                xyzt_units: f.i32(500) as u8,
                raw: bytes[..540].to_vec(),
            }
        };
        Ok(h)
    }

    /// Serialises the header (raw bytes patched with every field above).
    pub fn to_bytes(&self) -> Vec<u8> {
        let size = self.header_size();
        let mut b = if self.raw.len() == size {
            self.raw.clone()
        } else {
            vec![0u8; size]
        };
        let mut f = FieldsMut {
            b: &mut b,
            le: self.little_endian,
        };
        if self.version == 1 {
            f.i32(0, 348);
            for i in 0..8 {
                f.i16(40 + 2 * i, self.dim[i] as i16);
                f.f32(76 + 4 * i, self.pixdim[i]);
            }
            f.i16(68, self.intent_code as i16);
            f.i16(70, self.datatype);
            f.i16(72, self.bitpix);
            f.f32(108, self.vox_offset);
            f.f32(112, self.scl_slope);
            f.f32(116, self.scl_inter);
            f.f32(124, self.cal_max);
            f.f32(128, self.cal_min);
            f.i16(252, self.qform_code as i16);
            f.i16(254, self.sform_code as i16);
            for k in 0..3 {
                f.f32(256 + 4 * k, self.quatern[k]);
                f.f32(268 + 4 * k, self.qoffset[k]);
                for c in 0..4 {
                    f.f32(280 + 16 * k + 4 * c, self.srow[k][c]);
                }
            }
            b[123] = self.xyzt_units;
            b[344..348].copy_from_slice(b"n+1\0");
        } else {
            f.i32(0, 540);
            for i in 0..8 {
                f.i64(16 + 8 * i, self.dim[i]);
                f.f64(104 + 8 * i, self.pixdim[i]);
            }
            f.i16(12, self.datatype);
            f.i16(14, self.bitpix);
            f.i64(168, self.vox_offset as i64);
            f.f64(176, self.scl_slope);
            f.f64(184, self.scl_inter);
            f.f64(192, self.cal_max);
            f.f64(200, self.cal_min);
            f.i32(344, self.qform_code);
            f.i32(348, self.sform_code);
            for k in 0..3 {
                f.f64(352 + 8 * k, self.quatern[k]);
                f.f64(376 + 8 * k, self.qoffset[k]);
                for c in 0..4 {
                    f.f64(400 + 32 * k + 8 * c, self.srow[k][c]);
                }
            }
            f.i32(500, self.xyzt_units as i32);
            f.i32(504, self.intent_code);
            b[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        }
        b
    }

    /// Checks the fields and works out the grid. Repairs that keep the data usable (negative
    /// pixdim, qfac 0) are returned as notes.
    pub fn validate(&self, path: &Path) -> Result<(Layout, Geometry, Vec<String>)> {
        let bad = |p: String| DataError::malformed(path, FORMAT, p);
        let mut notes = Vec::new();
        let ndim = self.dim[0];
        if !(1..=7).contains(&ndim) {
            return Err(bad(format!(
                "dim[0] is {ndim}; the number of dimensions must be 1 to 7"
            )));
        }
        let mut dims = [1u64; 7];
        for i in 1..=ndim as usize {
            let d = self.dim[i];
            if d < 1 {
                return Err(bad(format!(
                    "dim[{i}] is {d}; every used dimension must be at least 1"
                )));
            }
            dims[i - 1] = d as u64;
        }
        if dims[4..].iter().any(|&d| d > 1) {
            return Err(DataError::unsupported(
                path,
                FORMAT,
                format!(
                    "5-D or higher data (dim = {:?})",
                    &self.dim[..=ndim as usize]
                ),
            ));
        }
        let dt = DataType::from_code(self.datatype)
            .ok_or_else(|| DataError::unsupported(path, FORMAT, describe_code(self.datatype)))?;
        if self.bitpix as usize != dt.size() * 8 {
            return Err(bad(format!(
                "bitpix is {} but {} ({}) has {} bits",
                self.bitpix,
                dt.name(),
                self.datatype,
                dt.size() * 8
            )));
        }
        let hdr = self.header_size() as f64;
        if !self.vox_offset.is_finite()
            || self.vox_offset < hdr
            || self.vox_offset > (1u64 << 40) as f64
        {
            return Err(bad(format!(
                "vox_offset is {}; voxel data must start at or after the {}-byte header",
                self.vox_offset, hdr
            )));
        }
        let [nx, ny, nz, nt] = [dims[0], dims[1], dims[2], dims[3]];
        budget::check_axes(path, FORMAT, &dims[..4])?;
        // One volume as stored and its f32 copy are held at once; both must fit the budget.
        let stored = budget::product(&[nx, ny, nz, dt.size() as u64]);
        budget::check(
            path,
            "one volume and its float copy",
            &[
                stored,
                budget::product(&[nx, ny, nz, dt.channels() as u64, 4]),
            ],
        )?;
        let volume_bytes = stored.expect("checked against the budget") as usize;
        let grid = [nx as usize, ny as usize, nz as usize];

        // Spacing from pixdim (used by the qform and the fallback).
        let mut spacing = [1.0f64; 3];
        for a in 0..3 {
            let v = self.pixdim[a + 1];
            if !v.is_finite() {
                return Err(bad(format!(
                    "pixdim[{}] is {v}; voxel sizes must be finite",
                    a + 1
                )));
            }
            if v == 0.0 {
                if grid[a] > 1 && self.sform_code <= 0 {
                    return Err(bad(format!(
                        "pixdim[{}] is 0 along an axis of {} voxels and there is no sform to give the spacing",
                        a + 1,
                        grid[a]
                    )));
                }
                continue;
            }
            if v < 0.0 {
                notes.push(format!("pixdim[{}] was {v}; used its magnitude", a + 1));
            }
            spacing[a] = v.abs();
        }

        let affine: Mat4 = if self.sform_code > 0 {
            let mut m = identity();
            for (i, row) in self.srow.iter().enumerate() {
                if row.iter().any(|v| !v.is_finite()) {
                    return Err(bad(format!(
                        "sform row {i} holds a non-finite value: {row:?}"
                    )));
                }
                m[i] = *row;
            }
            if det3(&m).abs() < 1e-12 {
                return Err(bad(format!("the sform is singular: {:?}", self.srow)));
            }
            m
        } else if self.qform_code > 0 {
            let q = self.quatern.iter().chain(&self.qoffset);
            if q.clone().any(|v| !v.is_finite()) {
                return Err(bad("the qform holds non-finite values".to_string()));
            }
            let qfac = if self.pixdim[0] == 0.0 {
                notes.push("pixdim[0] (qfac) was 0; used 1".into());
                1.0
            } else {
                self.pixdim[0]
            };
            quatern_to_affine(
                self.quatern[0],
                self.quatern[1],
                self.quatern[2],
                self.qoffset,
                spacing,
                qfac,
            )
        } else {
            notes.push(
                "no sform or qform; the affine is the pixdim scaling (NIfTI method 1)".into(),
            );
            let mut m = identity();
            for a in 0..3 {
                m[a][a] = spacing[a];
            }
            m
        };
        let geometry = Geometry::from_affine(grid, affine);
        Ok((
            Layout {
                datatype: dt,
                volumes: nt as usize,
                volume_bytes,
            },
            geometry,
            notes,
        ))
    }
}

/// Where the samples are and how they are stored.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub datatype: DataType,
    /// Volumes along dim[4] (time / components).
    pub volumes: usize,
    pub volume_bytes: usize,
}

fn read_err(path: &Path, gz: bool, what: &str, e: std::io::Error) -> DataError {
    if gz && e.kind() != std::io::ErrorKind::NotFound {
        DataError::malformed(
            path,
            FORMAT,
            format!("truncated or corrupt gzip stream while reading {what}: {e}"),
        )
    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
        DataError::malformed(path, FORMAT, format!("the file ends inside {what}"))
    } else {
        DataError::io(path, e)
    }
}

/// An open NIfTI stream: decompressed when gzip, with the stored length when known.
struct Stream<'a> {
    gz: bool,
    reader: Box<dyn Read + 'a>,
    /// Length of the uncompressed file (None for gzip).
    len: Option<u64>,
}

fn file_stream(path: &Path) -> Result<Stream<'static>> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| DataError::io(path, e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| DataError::io(path, e))?;
    let gz = n == 2 && magic == [0x1f, 0x8b];
    let reader = BufReader::new(f);
    Ok(if gz {
        Stream {
            gz,
            reader: Box::new(GzDecoder::new(reader)),
            len: None,
        }
    } else {
        Stream {
            gz,
            reader: Box::new(reader),
            len: Some(len),
        }
    })
}

fn bytes_stream(bytes: &[u8]) -> Stream<'_> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    if gz {
        Stream {
            gz,
            reader: Box::new(GzDecoder::new(bytes)),
            len: None,
        }
    } else {
        Stream {
            gz,
            reader: Box::new(bytes),
            len: Some(bytes.len() as u64),
        }
    }
}

fn read_header_from(path: &Path, s: &mut Stream<'_>) -> Result<NiftiHeader> {
    let mut head = vec![0u8; 348];
    s.reader
        .read_exact(&mut head)
        .map_err(|e| read_err(path, s.gz, "the header", e))?;
    let le = i32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    let be = i32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
    if le == 540 || be == 540 {
        head.resize(540, 0);
        s.reader
            .read_exact(&mut head[348..])
            .map_err(|e| read_err(path, s.gz, "the NIfTI-2 header", e))?;
    }
    NiftiHeader::parse(path, &head)
}

/// Reads the first volume of a NIfTI file.
pub fn read(path: &Path) -> Result<Volume> {
    read_volume(path, 0)
}

/// Reads volume `t` (along dim[4]) of a NIfTI file.
pub fn read_volume(path: &Path, t: usize) -> Result<Volume> {
    read_stream(path, file_stream(path)?, t)
}

/// Reads volume `t` of a NIfTI file held in memory (`name` is used in messages only).
pub fn read_bytes(name: &Path, bytes: &[u8], t: usize) -> Result<Volume> {
    read_stream(name, bytes_stream(bytes), t)
}

fn read_stream(path: &Path, mut s: Stream<'_>, t: usize) -> Result<Volume> {
    let h = read_header_from(path, &mut s)?;
    let gz = s.gz;
    let (layout, geometry, notes) = h.validate(path)?;
    if t >= layout.volumes {
        return Err(DataError::Invalid(format!(
            "{}: volume {t} requested, the file has {}",
            path.display(),
            layout.volumes
        )));
    }
    let start =
        h.vox_offset as u64 - h.header_size() as u64 + t as u64 * layout.volume_bytes as u64;
    if let Some(len) = s.len {
        // Uncompressed: compare with the real length before reading anything.
        let need = h.vox_offset as u128 + (layout.volumes as u128) * layout.volume_bytes as u128;
        if (len as u128) < need {
            return Err(DataError::malformed(
                path,
                FORMAT,
                format!(
                    "the file holds {len} bytes but vox_offset {} plus {} volume(s) of {} bytes needs {need}",
                    h.vox_offset, layout.volumes, layout.volume_bytes
                ),
            ));
        }
    }
    let mut r = s.reader;
    let skipped = std::io::copy(&mut r.by_ref().take(start), &mut std::io::sink())
        .map_err(|e| read_err(path, gz, "the bytes before the voxel data", e))?;
    if skipped < start {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!("vox_offset {} lies past the end of the data", h.vox_offset),
        ));
    }
    // Grows only as data arrive: a tiny file that declares a huge image cannot make us reserve it.
    let mut bytes = Vec::new();
    r.take(layout.volume_bytes as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(path, gz, "the voxel data", e))?;
    if bytes.len() < layout.volume_bytes {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!(
                "the voxel data end after {} of {} bytes (truncated file)",
                bytes.len(),
                layout.volume_bytes
            ),
        ));
    }
    let mut voxels = decode(&bytes, layout.datatype, h.little_endian);
    // NIfTI scaling: a slope of 0 or a non-finite slope means no scaling; a non-finite
    // intercept with a valid slope counts as 0.
    let slope = h.scl_slope;
    let inter = if h.scl_inter.is_finite() {
        h.scl_inter
    } else {
        0.0
    };
    let scaled = layout.datatype.channels() == 1
        && slope.is_finite()
        && slope != 0.0
        && (slope != 1.0 || inter != 0.0);
    if scaled {
        for v in voxels.iter_mut() {
            *v = (*v as f64 * slope + inter) as f32;
        }
    }
    let mut datatype = layout.datatype.name().to_string();
    if scaled {
        datatype += &format!(" (scaled ×{slope} + {inter})");
    }
    Ok(Volume {
        geometry,
        channels: layout.datatype.channels(),
        voxels,
        source: Source {
            path: path.to_path_buf(),
            format: if h.version == 2 {
                Format::Nifti2
            } else {
                Format::Nifti1
            },
            datatype,
            modality: None,
            nifti: Some(h),
            notes,
        },
    })
}

/// Decodes raw samples to f32 (RGBA drops alpha).
fn decode(bytes: &[u8], dt: DataType, le: bool) -> Vec<f32> {
    macro_rules! num {
        ($t:ty, $n:expr) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunk size");
                    (if le {
                        <$t>::from_le_bytes(a)
                    } else {
                        <$t>::from_be_bytes(a)
                    }) as f32
                })
                .collect()
        };
    }
    match dt {
        DataType::U8 | DataType::Rgb24 => bytes.iter().map(|&b| b as f32).collect(),
        DataType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DataType::I16 => num!(i16, 2),
        DataType::U16 => num!(u16, 2),
        DataType::I32 => num!(i32, 4),
        DataType::U32 => num!(u32, 4),
        DataType::I64 => num!(i64, 8),
        DataType::U64 => num!(u64, 8),
        DataType::F32 => num!(f32, 4),
        DataType::F64 => num!(f64, 8),
        DataType::Rgba32 => bytes
            .chunks_exact(4)
            .flat_map(|c| [c[0] as f32, c[1] as f32, c[2] as f32])
            .collect(),
    }
}

/// Writes samples of `dt` (given as f64 values) after `header` to `path` (gzip when it ends in
/// `.gz`), atomically.
/// A whole single-file NIfTI (header, no extensions, samples) in memory, uncompressed.
fn raw_bytes(
    header: &NiftiHeader,
    samples: &mut dyn Iterator<Item = f64>,
    dt: DataType,
) -> Vec<u8> {
    let mut h = header.clone();
    h.datatype = dt.code();
    h.bitpix = (dt.size() * 8) as i16;
    h.vox_offset = (h.header_size() + 4) as f64;
    let mut out = h.to_bytes();
    out.extend_from_slice(&[0u8; 4]); // no extensions
    let le = h.little_endian;
    for v in samples {
        let mut b: Vec<u8> = match dt {
            DataType::U8 => vec![v as u8],
            DataType::I8 => vec![v as i8 as u8],
            DataType::I16 => (v as i16).to_le_bytes().to_vec(),
            DataType::U16 => (v as u16).to_le_bytes().to_vec(),
            DataType::I32 => (v as i32).to_le_bytes().to_vec(),
            DataType::U32 => (v as u32).to_le_bytes().to_vec(),
            DataType::I64 => (v as i64).to_le_bytes().to_vec(),
            DataType::U64 => (v as u64).to_le_bytes().to_vec(),
            DataType::F32 => (v as f32).to_le_bytes().to_vec(),
            DataType::F64 => v.to_le_bytes().to_vec(),
            DataType::Rgb24 | DataType::Rgba32 => unreachable!("written per channel as U8"),
        };
        if !le {
            b.reverse();
        }
        out.extend_from_slice(&b);
    }
    out
}

fn write_raw(
    path: &Path,
    header: &NiftiHeader,
    samples: &mut dyn Iterator<Item = f64>,
    dt: DataType,
    overwrite: bool,
) -> Result<()> {
    let out = raw_bytes(header, samples, dt);
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    write_atomic(path, overwrite, |w| {
        if gz {
            let mut e = flate2::write::GzEncoder::new(w, flate2::Compression::new(6));
            e.write_all(&out)?;
            e.finish()?;
            Ok(())
        } else {
            w.write_all(&out)
        }
    })
}

/// The header a label map (or an image) is written with: the source's header with the grid fields
/// of `geometry` and one volume, or a fresh NIfTI-1 header.
fn header_for(geometry: &Geometry, source: Option<&NiftiHeader>, dt: DataType) -> NiftiHeader {
    match source {
        Some(src)
            if src.dim[1..4]
                == [
                    geometry.dims[0] as i64,
                    geometry.dims[1] as i64,
                    geometry.dims[2] as i64,
                ] =>
        {
            let mut h = src.clone();
            h.dim = [3, h.dim[1], h.dim[2], h.dim[3], 1, 1, 1, 1];
            h.scl_slope = 1.0;
            h.scl_inter = 0.0;
            h
        }
        _ => NiftiHeader::for_geometry(geometry, dt),
    }
}

/// Writes a label map as NIfTI (uint8 when every label fits, else uint16), with the header of the
/// image it belongs to when known (dims, affine, qform/sform codes kept). Never replaces an
/// existing file unless `overwrite`.
pub fn write_labels(path: &Path, labels: &LabelMap, overwrite: bool) -> Result<()> {
    let (header, dt) = labels_header(labels);
    write_raw(
        path,
        &header,
        &mut labels.labels.iter().map(|&l| l as f64),
        dt,
        overwrite,
    )
}

/// [`write_labels`] into memory: a whole `.nii` file, gzip-compressed (`.nii.gz`) when `gz`.
pub fn labels_bytes(labels: &LabelMap, gz: bool) -> Result<Vec<u8>> {
    let (header, dt) = labels_header(labels);
    let raw = raw_bytes(&header, &mut labels.labels.iter().map(|&l| l as f64), dt);
    if !gz {
        return Ok(raw);
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(&raw)
        .and_then(|_| e.finish())
        .map_err(|err| DataError::Invalid(format!("compressing the label map failed: {err}")))
}

/// The header of a label map's file (uint8 when every label fits, else uint16) and its type.
fn labels_header(labels: &LabelMap) -> (NiftiHeader, DataType) {
    let max = labels.max_label();
    let dt = if max <= 255 {
        DataType::U8
    } else {
        DataType::U16
    };
    let mut h = header_for(&labels.geometry, labels.nifti.as_ref(), dt);
    h.intent_code = 1002; // NIFTI_INTENT_LABEL
    h.cal_min = 0.0;
    h.cal_max = max as f64;
    (h, dt)
}

/// Writes raw samples with a caller-made header (tests and tools that need a given datatype).
pub fn write_samples(
    path: &Path,
    header: &NiftiHeader,
    samples: &[f64],
    dt: DataType,
    overwrite: bool,
) -> Result<()> {
    write_raw(path, header, &mut samples.iter().copied(), dt, overwrite)
}
