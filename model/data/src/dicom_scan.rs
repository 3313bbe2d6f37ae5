//! A shallow walk over the element headers of a DICOM stream ("DICM" magic, file meta group,
//! data set) that checks every declared length against the bytes that remain. The DICOM parser
//! reserves memory for a value's declared length before reading it; this walk runs first so a
//! short corrupt file cannot make it reserve gigabytes.

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;

const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Largest inflated data set of a deflated file that is walked (larger ones are refused).
const MAX_INFLATED: u64 = 1 << 30;

const SHORT_VRS: [&[u8; 2]; 24] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US", b"UN", b"UC", b"UR",
];
/// VRs whose explicit encoding has a 4-byte length after two reserved bytes.
const LONG_VRS: [&[u8; 2]; 12] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
];

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Explicit,
    Implicit,
}

struct Walker<'a> {
    b: &'a [u8],
    big_endian: bool,
}

impl Walker<'_> {
    fn u16(&self, p: usize) -> u16 {
        let a = [self.b[p], self.b[p + 1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(&self, p: usize) -> u32 {
        let a = [self.b[p], self.b[p + 1], self.b[p + 2], self.b[p + 3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Walks elements from `pos` to the end. Returns the transfer syntax when it stops at the end
    /// of the meta group (`meta_only`), else None.
    fn walk(
        &self,
        mut pos: usize,
        encoding: Encoding,
        meta_only: bool,
    ) -> Result<(usize, String), String> {
        let b = self.b;
        let mut transfer_syntax = String::new();
        // Inside undefined-length (encapsulated) pixel data: its items hold raw bytes, not elements.
        let mut fragments = false;
        while pos + 8 <= b.len() {
            let (group, element) = (self.u16(pos), self.u16(pos + 2));
            if meta_only && group != 0x0002 {
                return Ok((pos, transfer_syntax));
            }
            let remaining = |header: usize| b.len().saturating_sub(pos + header) as u64;
            if group == 0xFFFE {
                let len = self.u32(pos + 4);
                match element {
                    0xE000 => {
                        if len != UNDEFINED && len as u64 > remaining(8) {
                            return Err(format!(
                                "an item at byte {pos} declares {len} bytes, only {} remain (truncated or corrupt file)",
                                remaining(8)
                            ));
                        }
                        // Fragments are raw bytes; sequence items hold elements.
                        pos += 8 + if fragments && len != UNDEFINED {
                            len as usize
                        } else {
                            0
                        };
                    }
                    0xE0DD | 0xE00D => {
                        if len != 0 {
                            return Err(format!(
                                "a delimiter at byte {pos} declares length {len}, must be 0"
                            ));
                        }
                        fragments &= element != 0xE0DD;
                        pos += 8;
                    }
                    _ => {
                        if len as u64 > remaining(8) {
                            return Err(format!(
                                "element (FFFE,{element:04X}) declares {len} bytes, only {} remain",
                                remaining(8)
                            ));
                        }
                        pos += 8 + len as usize;
                    }
                }
                continue;
            }
            let tag = Tag(group, element);
            let mut vr = [0u8; 2];
            let (header, len, is_sequence) = match encoding {
                Encoding::Explicit => {
                    vr = [b[pos + 4], b[pos + 5]];
                    if LONG_VRS.contains(&&vr) {
                        if pos + 12 > b.len() {
                            return Err(format!("element {tag} at byte {pos} is cut short"));
                        }
                        (12, self.u32(pos + 8), &vr == b"SQ")
                    } else if SHORT_VRS.contains(&&vr) {
                        (8, self.u16(pos + 6) as u32, false)
                    } else {
                        return Err(format!(
                            "element {tag} at byte {pos} has the invalid value representation {:?}",
                            String::from_utf8_lossy(&vr)
                        ));
                    }
                }
                Encoding::Implicit => {
                    let dict_vr = StandardDataDictionary.by_tag(tag).map(|e| e.vr.relaxed());
                    if let Some(v) = dict_vr {
                        vr.copy_from_slice(&v.to_bytes());
                    }
                    (8, self.u32(pos + 4), dict_vr == Some(VR::SQ))
                }
            };
            // Binary values must hold whole numbers of samples, or the parser loses its place.
            let sample = match &vr {
                b"SS" | b"US" | b"OW" => 2,
                b"FL" | b"SL" | b"UL" | b"AT" | b"OF" | b"OL" => 4,
                b"FD" | b"OD" | b"OV" | b"SV" | b"UV" => 8,
                _ => 1,
            };
            if len != UNDEFINED && len % sample != 0 {
                return Err(format!(
                    "element {tag} ({}) has length {len}, not a multiple of {sample}",
                    String::from_utf8_lossy(&vr)
                ));
            }
            let pixel_data = tag == Tag(0x7FE0, 0x0010);
            // Undefined length belongs to sequences, encapsulated pixel data and UN (unknown) values.
            if len == UNDEFINED && !(is_sequence || pixel_data || &vr == b"UN" || vr == [0, 0]) {
                return Err(format!(
                    "element {tag} ({}) has undefined length, which only sequences and pixel data may have",
                    String::from_utf8_lossy(&vr)
                ));
            }
            if len == UNDEFINED {
                // A sequence, or encapsulated pixel data whose items are fragments.
                // Only pixel data is encapsulated; the parser reads any other undefined-length
                // value as a sequence of items holding elements.
                fragments = !is_sequence && pixel_data;
                pos += header;
                continue;
            }
            if len as u64 > remaining(header) {
                return Err(format!(
                    "element {tag} declares {len} bytes, only {} remain (truncated or corrupt file)",
                    remaining(header)
                ));
            }
            if tag == Tag(0x0002, 0x0010) {
                transfer_syntax =
                    String::from_utf8_lossy(&b[pos + header..pos + header + len as usize])
                        .to_string();
            }
            pos += header + if is_sequence { 0 } else { len as usize };
        }
        Ok((pos, transfer_syntax))
    }
}

/// Ok when every element, item and fragment length fits in the stream. `body` starts at "DICM"
/// (or directly at the meta group).
pub fn check_declared_lengths(body: &[u8]) -> Result<(), String> {
    let start = if body.starts_with(b"DICM") { 4 } else { 0 };
    // The meta group is always explicit VR little endian.
    let meta = Walker {
        b: body,
        big_endian: false,
    };
    let (data_start, ts) = meta.walk(start, Encoding::Explicit, true)?;
    // The parser reads the meta group by its group length (0002,0000): it must end where the
    // elements end, or the two readings disagree about where the data set starts.
    if body.len() >= start + 4 && body[start..start + 4] == [2, 0, 0, 0] {
        if body.len() < start + 12 || &body[start + 4..start + 8] != b"UL\x04\x00" {
            return Err("the file meta group length (0002,0000) is not a 4-byte UL".to_string());
        }
        let declared = start
            + 12
            + u32::from_le_bytes([
                body[start + 8],
                body[start + 9],
                body[start + 10],
                body[start + 11],
            ]) as usize;
        if declared != data_start {
            return Err(format!(
                "the file meta group length says it ends at byte {declared}, its elements end at byte {data_start}"
            ));
        }
    }
    let rest = &body[data_start.min(body.len())..];
    match ts.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.1.2" => Walker {
            b: rest,
            big_endian: false,
        }
        .walk(0, Encoding::Implicit, false)
        .map(|_| ()),
        "1.2.840.10008.1.2.2" => Walker {
            b: rest,
            big_endian: true,
        }
        .walk(0, Encoding::Explicit, false)
        .map(|_| ()),
        "1.2.840.10008.1.2.1.99" => {
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(rest)
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("the deflated data set cannot be inflated: {e}"))?;
            if inflated.len() as u64 > MAX_INFLATED {
                return Err(format!(
                    "the deflated data set inflates to more than {MAX_INFLATED} bytes"
                ));
            }
            Walker {
                b: &inflated,
                big_endian: false,
            }
            .walk(0, Encoding::Explicit, false)
            .map(|_| ())
        }
        _ => Walker {
            b: rest,
            big_endian: false,
        }
        .walk(0, Encoding::Explicit, false)
        .map(|_| ()),
    }
}
