//! DICOM: a folder of files → series grouped by SeriesInstanceUID, slices sorted along the slice
//! normal, spacing from the positions, RescaleSlope/Intercept applied (→ HU for CT), single- and
//! multi-frame files. Positions are converted from DICOM's LPS to RAS+ world coordinates.

use crate::budget;
use crate::error::{DataError, Result};
use crate::geometry::{identity, Geometry, Mat4};
use crate::volume::{Format, Source, Volume};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::Serialize;
use std::path::{Path, PathBuf};

const FORMAT: &str = "DICOM";

/// One series found in a folder.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesInfo {
    pub uid: String,
    pub modality: String,
    pub description: String,
    pub files: Vec<PathBuf>,
}

/// What a folder scan found: the series, and the files that were skipped with the reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderScan {
    pub series: Vec<SeriesInfo>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Progress callback: (done, total) → keep going?
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Where a DICOM object comes from: a file, or bytes in memory (browser, fuzzing).
#[derive(Clone, Copy)]
enum Input<'a> {
    File(&'a Path),
    Bytes(&'a Path, &'a [u8]),
}

impl Input<'_> {
    fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Bytes(p, _) => p,
        }
    }
}

/// Printable ASCII/UTF-8 text with line breaks in its first kilobyte (a DICOM data set starts
/// with binary tag numbers).
fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    !head.is_empty()
        && head.iter().all(|&b| {
            b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
        })
        && std::str::from_utf8(head).is_ok_and(|t| t.chars().any(|c| c.is_alphabetic()))
}

fn open(path: &Path, header_only: bool) -> Result<DefaultDicomObject> {
    open_input(Input::File(path), header_only)
}

fn open_input(input: Input<'_>, header_only: bool) -> Result<DefaultDicomObject> {
    let path = input.path();
    let owned;
    let bytes: &[u8] = match input {
        Input::File(p) => {
            owned = budget::read_file(p)?;
            &owned
        }
        Input::Bytes(_, b) => b,
    };
    // With the 128-byte preamble, the "DICM" magic follows it.
    let preamble = bytes.len() >= 132 && &bytes[128..132] == b"DICM";
    let body = if preamble { &bytes[128..] } else { bytes };
    // Without the marker only the name says DICOM: text (a report, a list) is said to be what
    // it is rather than reported as a broken element.
    if !preamble && !body.starts_with(b"DICM") && looks_like_text(body) {
        return Err(DataError::malformed(
            path,
            FORMAT,
            "not a DICOM file: it holds text, and no \"DICM\" marker at byte 128",
        ));
    }
    // The parser reserves each element's declared length before reading it; refuse lengths
    // the file cannot hold so a small corrupt file cannot make it reserve gigabytes.
    crate::dicom_scan::check_declared_lengths(body).map_err(|p| {
        if preamble {
            DataError::malformed(path, FORMAT, p)
        } else {
            DataError::malformed(
                path,
                FORMAT,
                format!("not a DICOM file, or a damaged one without its \"DICM\" marker: {p}"),
            )
        }
    })?;
    let mut opts = OpenFileOptions::new();
    if header_only {
        opts = opts.read_until(tags::PIXEL_DATA);
    }
    let opened = opts
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(body);
    opened.map_err(|e| {
        let msg = error_chain(&e);
        if msg.contains("transfer syntax")
            || msg.contains("Unsupported")
            || msg.contains("unsupported")
        {
            DataError::unsupported(path, FORMAT, msg)
        } else {
            DataError::malformed(path, FORMAT, msg)
        }
    })
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s.trim().trim_end_matches('\0').trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn floats(
    path: &Path,
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    n: usize,
) -> Result<Option<Vec<f64>>> {
    let Some(e) = obj.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    let v = e.to_multi_float64().map_err(|err| {
        DataError::malformed(
            path,
            FORMAT,
            format!("{name} cannot be read as numbers: {err}"),
        )
    })?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!("{name} must hold {n} finite numbers, holds {v:?}"),
        ));
    }
    Ok(Some(v))
}

fn required_int(path: &Path, obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<u64> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u32>().ok())
        .map(u64::from)
        .ok_or_else(|| {
            DataError::malformed(path, FORMAT, format!("{name} is missing or not a number"))
        })
}

fn float1(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    let v = obj.element_opt(tag).ok()??.to_float64().ok()?;
    v.is_finite().then_some(v)
}

/// First item of a sequence element.
fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(tag).ok()??.items()?.first()
}

/// Lists the series under `dir` (searched recursively, 8 levels deep). Files that are not DICOM
/// or hold no image are skipped and reported.
pub fn list_series(dir: &Path) -> Result<FolderScan> {
    let mut files = Vec::new();
    collect_files(dir, 0, &mut files)?;
    files.sort();
    let mut scan = FolderScan::default();
    for f in files {
        match open(&f, true) {
            Ok(obj) => {
                let Some(uid) = text(&obj, tags::SERIES_INSTANCE_UID) else {
                    scan.skipped.push((f, "no SeriesInstanceUID".into()));
                    continue;
                };
                if obj.element_opt(tags::ROWS).ok().flatten().is_none() {
                    scan.skipped.push((f, "holds no image (no Rows)".into()));
                    continue;
                }
                match scan.series.iter_mut().find(|s| s.uid == uid) {
                    Some(s) => s.files.push(f),
                    None => scan.series.push(SeriesInfo {
                        uid,
                        modality: text(&obj, tags::MODALITY).unwrap_or_default(),
                        description: text(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
                        files: vec![f],
                    }),
                }
            }
            Err(e) => scan.skipped.push((f, e.to_string())),
        }
    }
    Ok(scan)
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| DataError::io(&p, e))?;
        if ft.is_dir() && depth < 8 {
            collect_files(&p, depth + 1, out)?;
        } else if ft.is_file()
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// One decoded frame with its place in space (LPS).
struct Frame {
    position: [f64; 3],
    orientation: [f64; 6],
    /// (between rows, between columns) in mm.
    pixel_spacing: [f64; 2],
    rows: usize,
    cols: usize,
    channels: usize,
    data: Vec<f32>,
    thickness: Option<f64>,
}

struct FileFrames {
    frames: Vec<Frame>,
    modality: Option<String>,
    datatype: String,
    notes: Vec<String>,
}

fn check_transfer_syntax(path: &Path, obj: &DefaultDicomObject) -> Result<()> {
    let uid = obj.meta().transfer_syntax().trim_end_matches('\0').trim();
    match TransferSyntaxRegistry.get(uid) {
        None => Err(DataError::unsupported(
            path,
            FORMAT,
            format!("transfer syntax {uid} (unknown)"),
        )),
        Some(ts) if !ts.can_decode_all() => Err(DataError::unsupported(
            path,
            FORMAT,
            format!(
                "transfer syntax {uid} ({}): its pixel data cannot be decoded",
                ts.name()
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn read_frames(path: &Path) -> Result<FileFrames> {
    read_frames_from(Input::File(path))
}

fn read_frames_from(input: Input<'_>) -> Result<FileFrames> {
    let path = input.path();
    let obj = open_input(input, false)?;
    check_transfer_syntax(path, &obj)?;
    let mut notes = Vec::new();
    let rows = required_int(path, &obj, tags::ROWS, "Rows (0028,0010)")?;
    let cols = required_int(path, &obj, tags::COLUMNS, "Columns (0028,0011)")?;
    if rows == 0 || cols == 0 {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!("image size is {cols}×{rows}"),
        ));
    }
    let nframes = text(&obj, tags::NUMBER_OF_FRAMES)
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| DataError::malformed(path, FORMAT, format!("NumberOfFrames is {s:?}")))
        })
        .transpose()?
        .unwrap_or(1);
    if nframes < 1 {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!("NumberOfFrames is {nframes}"),
        ));
    }
    let spp = obj
        .element_opt(tags::SAMPLES_PER_PIXEL)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(1) as u64;
    budget::check_axes(path, FORMAT, &[rows, cols, nframes as u64])?;
    // The decoded samples (up to 32 bits each) and their f32 copy are held at once.
    let samples = budget::product(&[rows, cols, nframes as u64, spp, 4]);
    budget::check(
        path,
        "the pixel data and its float copy",
        &[samples, samples],
    )?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(DataError::malformed(
            path,
            FORMAT,
            "no Pixel Data (7FE0,0010)",
        ));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let uid = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        DataError::malformed(
            path,
            FORMAT,
            format!(
                "pixel data (transfer syntax {uid}) cannot be decoded: {}",
                error_chain(&e)
            ),
        )
    })?;
    let need = rows as u128
        * cols as u128
        * decoded.samples_per_pixel() as u128
        * (decoded.bits_allocated() as u128).div_ceil(8)
        * decoded.number_of_frames() as u128;
    if (decoded.data().len() as u128) < need {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!(
                "Pixel Data holds {} bytes; {cols}×{rows} pixels × {} sample(s) × {} bits × {} frame(s) need {need}",
                decoded.data().len(),
                decoded.samples_per_pixel(),
                decoded.bits_allocated(),
                decoded.number_of_frames()
            ),
        ));
    }
    let channels = decoded.samples_per_pixel() as usize;
    if channels != 1 && channels != 3 {
        return Err(DataError::unsupported(
            path,
            FORMAT,
            format!("{channels} samples per pixel"),
        ));
    }
    let mono = decoded.photometric_interpretation().is_monochrome();
    if decoded.photometric_interpretation().to_string() == "MONOCHROME1" {
        notes.push("MONOCHROME1: higher values display darker; values are kept as stored".into());
    }
    let rescale = if mono {
        decoded.rescale().map(|r| r.to_vec()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let datatype = format!(
        "{}{} bits{}",
        if decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed {
            "int"
        } else {
            "uint"
        },
        decoded.bits_allocated(),
        if channels == 3 { " RGB" } else { "" }
    );

    let shared = first_item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items());
    // Orientation and pixel spacing: top level, else the shared functional groups.
    let orientation = match floats(
        path,
        &obj,
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )? {
        Some(v) => Some(v),
        None => match shared.and_then(|s| first_item(s, tags::PLANE_ORIENTATION_SEQUENCE)) {
            Some(item) => floats(
                path,
                item,
                tags::IMAGE_ORIENTATION_PATIENT,
                "ImageOrientationPatient",
                6,
            )?,
            None => None,
        },
    };
    let orientation: [f64; 6] = match orientation {
        Some(v) => v.try_into().expect("6 values"),
        None => {
            notes.push("no ImageOrientationPatient; assumed axial (1,0,0, 0,1,0)".into());
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        }
    };
    let measures = shared.and_then(|s| first_item(s, tags::PIXEL_MEASURES_SEQUENCE));
    let spacing = match floats(path, &obj, tags::PIXEL_SPACING, "PixelSpacing", 2)? {
        Some(v) => Some(v),
        None => match measures {
            Some(m) => floats(path, m, tags::PIXEL_SPACING, "PixelSpacing", 2)?,
            None => floats(
                path,
                &obj,
                tags::IMAGER_PIXEL_SPACING,
                "ImagerPixelSpacing",
                2,
            )?,
        },
    };
    let pixel_spacing = match spacing {
        Some(v) if v[0] > 0.0 && v[1] > 0.0 => [v[0], v[1]],
        Some(v) => {
            return Err(DataError::malformed(
                path,
                FORMAT,
                format!("PixelSpacing must be positive, is {v:?}"),
            ))
        }
        None => {
            notes.push("no PixelSpacing; assumed 1 mm".into());
            [1.0, 1.0]
        }
    };
    let thickness = float1(&obj, tags::SPACING_BETWEEN_SLICES)
        .or_else(|| measures.and_then(|m| float1(m, tags::SPACING_BETWEEN_SLICES)))
        .or_else(|| float1(&obj, tags::SLICE_THICKNESS))
        .or_else(|| measures.and_then(|m| float1(m, tags::SLICE_THICKNESS)))
        .filter(|t| *t > 0.0);
    let top_position = floats(
        path,
        &obj,
        tags::IMAGE_POSITION_PATIENT,
        "ImagePositionPatient",
        3,
    )?;

    let opts = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let mut frames = Vec::with_capacity(nframes as usize);
    for f in 0..decoded.number_of_frames().min(nframes as u32) {
        let planar = channels == 3
            && decoded.planar_configuration() != dicom_pixeldata::PlanarConfiguration::Standard;
        let mut data: Vec<f32> = if planar {
            interleave_planes(path, &decoded, f, (rows * cols) as usize)?
        } else {
            decoded.to_vec_frame_with_options(f, &opts).map_err(|e| {
                DataError::malformed(path, FORMAT, format!("frame {f}: {}", error_chain(&e)))
            })?
        };
        if data.len() != (rows * cols) as usize * channels {
            return Err(DataError::malformed(
                path,
                FORMAT,
                format!(
                    "frame {f} holds {} samples, expected {cols}×{rows}×{channels}",
                    data.len()
                ),
            ));
        }
        if let Some(r) = rescale.get(f as usize).or(rescale.first()) {
            if r.slope != 1.0 || r.intercept != 0.0 {
                for v in data.iter_mut() {
                    *v = (*v as f64 * r.slope + r.intercept) as f32;
                }
            }
        }
        let frame_pos = match per_frame.and_then(|items| items.get(f as usize)) {
            Some(item) => match first_item(item, tags::PLANE_POSITION_SEQUENCE) {
                Some(p) => floats(
                    path,
                    p,
                    tags::IMAGE_POSITION_PATIENT,
                    "ImagePositionPatient",
                    3,
                )?,
                None => None,
            },
            None => None,
        };
        let position = match (frame_pos, &top_position) {
            (Some(p), _) => [p[0], p[1], p[2]],
            (None, Some(p)) if nframes == 1 => [p[0], p[1], p[2]],
            (None, base) => {
                // Frames without their own position: stacked along the normal from the first.
                let b = base.clone().unwrap_or_else(|| vec![0.0; 3]);
                let n = normal(&orientation);
                let step = thickness.unwrap_or(1.0) * f as f64;
                if f == 0 {
                    notes.push(if base.is_some() {
                        "frames carry no positions; stacked along the slice normal".into()
                    } else {
                        "no ImagePositionPatient; slices stacked from the origin".into()
                    });
                }
                [b[0] + n[0] * step, b[1] + n[1] * step, b[2] + n[2] * step]
            }
        };
        frames.push(Frame {
            position,
            orientation,
            pixel_spacing,
            rows: rows as usize,
            cols: cols as usize,
            channels,
            data,
            thickness,
        });
    }
    Ok(FileFrames {
        frames,
        modality: text(&obj, tags::MODALITY),
        datatype,
        notes,
    })
}

/// Frame `f` of colour pixel data stored plane by plane (PlanarConfiguration 1: all R, then all
/// G, then all B) as interleaved RGB samples.
fn interleave_planes(
    path: &Path,
    decoded: &dicom_pixeldata::DecodedPixelData<'_>,
    f: u32,
    pixels: usize,
) -> Result<Vec<f32>> {
    let bytes_per = (decoded.bits_allocated() as usize).div_ceil(8);
    if bytes_per != 1 && bytes_per != 2 {
        return Err(DataError::unsupported(
            path,
            FORMAT,
            format!(
                "colour planes of {} bits allocated",
                decoded.bits_allocated()
            ),
        ));
    }
    let frame = pixels * 3 * bytes_per;
    let start = f as usize * frame;
    let data = decoded.data();
    let Some(raw) = data.get(start..start + frame) else {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!("frame {f} lies past the end of the pixel data"),
        ));
    };
    let sample = |i: usize| -> f32 {
        if bytes_per == 1 {
            raw[i] as f32
        } else {
            u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as f32
        }
    };
    let mut out = Vec::with_capacity(pixels * 3);
    for p in 0..pixels {
        for c in 0..3 {
            out.push(sample(c * pixels + p));
        }
    }
    Ok(out)
}

fn normal(o: &[f64; 6]) -> [f64; 3] {
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Reads one DICOM file (all its frames) as a volume.
pub fn load_file(path: &Path) -> Result<Volume> {
    let ff = read_frames(path)?;
    assemble(path, vec![ff])
}

/// Reads one DICOM file held in memory (`name` is used in messages only).
pub fn load_bytes(name: &Path, bytes: &[u8]) -> Result<Volume> {
    let ff = read_frames_from(Input::Bytes(name, bytes))?;
    assemble(name, vec![ff])
}

/// Loads the series `uid` from `dir` (None: the series with the most files).
pub fn load_series(dir: &Path, uid: Option<&str>) -> Result<Volume> {
    load_series_with(dir, uid, &mut |_, _| true)
}

/// As [`load_series`], reporting progress per file; the callback returns false to cancel.
pub fn load_series_with(dir: &Path, uid: Option<&str>, progress: Progress<'_>) -> Result<Volume> {
    let scan = list_series(dir)?;
    let series = match uid {
        Some(u) => scan.series.iter().find(|s| s.uid == u).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: no series {u}; found {}",
                dir.display(),
                scan.series
                    .iter()
                    .map(|s| s.uid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => scan
            .series
            .iter()
            .max_by_key(|s| s.files.len())
            .ok_or_else(|| {
                let why = scan
                    .skipped
                    .first()
                    .map(|(p, e)| format!(" (e.g. {}: {e})", p.display()))
                    .unwrap_or_default();
                DataError::Invalid(format!(
                    "{}: no DICOM image series found among {} file(s){why}",
                    dir.display(),
                    scan.skipped.len()
                ))
            })?,
    };
    load_scanned_series(dir, series, progress)
}

/// Loads a series found by [`list_series`] (no second scan of the folder).
pub fn load_scanned_series(
    dir: &Path,
    series: &SeriesInfo,
    progress: Progress<'_>,
) -> Result<Volume> {
    let total = series.files.len();
    let mut files = Vec::with_capacity(total);
    for (i, f) in series.files.iter().enumerate() {
        if !progress(i, total) {
            return Err(DataError::Cancelled);
        }
        files.push(read_frames(f)?);
    }
    progress(total, total);
    assemble(dir, files)
}

fn assemble(path: &Path, files: Vec<FileFrames>) -> Result<Volume> {
    let modality = files.iter().find_map(|f| f.modality.clone());
    let datatype = files
        .first()
        .map(|f| f.datatype.clone())
        .unwrap_or_default();
    let mut notes: Vec<String> = Vec::new();
    for f in &files {
        for n in &f.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    let mut frames: Vec<Frame> = files.into_iter().flat_map(|f| f.frames).collect();
    let first = frames
        .first()
        .ok_or_else(|| DataError::malformed(path, FORMAT, "the series holds no frames"))?;
    let (rows, cols, channels, orientation, pixel_spacing) = (
        first.rows,
        first.cols,
        first.channels,
        first.orientation,
        first.pixel_spacing,
    );
    for f in &frames {
        if (f.rows, f.cols, f.channels) != (rows, cols, channels) {
            return Err(DataError::malformed(
                path,
                FORMAT,
                format!(
                    "slices differ in size: {cols}×{rows}×{channels} and {}×{}×{}",
                    f.cols, f.rows, f.channels
                ),
            ));
        }
        if f.orientation
            .iter()
            .zip(&orientation)
            .any(|(a, b)| (a - b).abs() > 1e-3)
        {
            return Err(DataError::malformed(
                path,
                FORMAT,
                format!(
                    "slices differ in orientation: {orientation:?} and {:?}",
                    f.orientation
                ),
            ));
        }
    }
    let n = normal(&orientation);
    if dot(n, n) < 0.5 {
        return Err(DataError::malformed(
            path,
            FORMAT,
            format!(
                "ImageOrientationPatient {orientation:?} does not hold two orthogonal unit vectors"
            ),
        ));
    }
    frames.sort_by(|a, b| dot(a.position, n).total_cmp(&dot(b.position, n)));
    let depth = frames.len();
    let mut gaps: Vec<f64> = frames
        .windows(2)
        .map(|w| dot(w[1].position, n) - dot(w[0].position, n))
        .collect();
    if gaps.iter().any(|g| g.abs() < 1e-4) {
        return Err(DataError::malformed(
            path,
            FORMAT,
            "two slices share one position (several series or echoes mixed in one SeriesInstanceUID?)",
        ));
    }
    let step: [f64; 3] = if depth > 1 {
        let (a, b) = (frames[0].position, frames[depth - 1].position);
        let k = (depth - 1) as f64;
        gaps.sort_by(f64::total_cmp);
        let (lo, hi) = (gaps[0], gaps[gaps.len() - 1]);
        if hi - lo > 0.01 * hi.abs() + 1e-3 {
            notes.push(format!(
                "slice spacing varies from {lo:.4} to {hi:.4} mm; the volume uses the mean spacing"
            ));
        }
        [(b[0] - a[0]) / k, (b[1] - a[1]) / k, (b[2] - a[2]) / k]
    } else {
        let t = frames[0].thickness.unwrap_or(1.0);
        [n[0] * t, n[1] * t, n[2] * t]
    };
    // LPS affine, then flip x and y to RAS.
    let p0 = frames[0].position;
    let mut m: Mat4 = identity();
    for i in 0..3 {
        m[i][0] = orientation[i] * pixel_spacing[1];
        m[i][1] = orientation[3 + i] * pixel_spacing[0];
        m[i][2] = step[i];
        m[i][3] = p0[i];
    }
    for row in m.iter_mut().take(2) {
        for v in row.iter_mut() {
            *v = -*v;
        }
    }
    let mut voxels = Vec::with_capacity(rows * cols * channels * depth);
    for f in &frames {
        voxels.extend_from_slice(&f.data);
    }
    Ok(Volume {
        geometry: Geometry::from_affine([cols, rows, depth], m),
        channels,
        voxels,
        source: Source {
            path: path.to_path_buf(),
            format: Format::Dicom,
            datatype,
            modality,
            nifti: None,
            notes,
        },
    })
}
