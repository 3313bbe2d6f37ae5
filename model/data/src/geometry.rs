//! Voxel grid geometry: dimensions, spacing in mm and the voxel → world (RAS+, mm) affine.
//!
//! Every loader converts to RAS+ world coordinates (NIfTI's convention); DICOM's LPS positions are
//! flipped on load. Orientation letters name the anatomical direction each voxel axis points to,
//! as `nibabel.aff2axcodes` does (an identity affine is "RAS", a usual axial DICOM series "LPS").

// Matrix code reads best with explicit row/column indices.
#![allow(clippy::needless_range_loop)]

use serde::Serialize;

pub type Mat4 = [[f64; 4]; 4];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Geometry {
    /// Voxels along x (columns), y (rows), z (slices). 2-D images have z = 1.
    pub dims: [usize; 3],
    /// Distance between voxel centres along each axis, in mm (always positive).
    pub spacing_mm: [f64; 3],
    /// Row-major 4×4 affine mapping (i, j, k, 1) to RAS+ world millimetres.
    pub world_from_voxel: Mat4,
}

impl Geometry {
    /// A grid with the given spacing, axes along +x, +y, +z and the first voxel at the origin.
    pub fn axis_aligned(dims: [usize; 3], spacing_mm: [f64; 3]) -> Self {
        let mut m = identity();
        for (a, s) in spacing_mm.iter().enumerate() {
            m[a][a] = *s;
        }
        Geometry {
            dims,
            spacing_mm,
            world_from_voxel: m,
        }
    }

    pub fn from_affine(dims: [usize; 3], world_from_voxel: Mat4) -> Self {
        let mut spacing_mm = [0.0; 3];
        for (j, s) in spacing_mm.iter_mut().enumerate() {
            *s = (0..3)
                .map(|i| world_from_voxel[i][j].powi(2))
                .sum::<f64>()
                .sqrt();
        }
        Geometry {
            dims,
            spacing_mm,
            world_from_voxel,
        }
    }

    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }

    /// World position (RAS+ mm) of a voxel centre.
    pub fn world(&self, voxel: [f64; 3]) -> [f64; 3] {
        let m = &self.world_from_voxel;
        let mut out = [0.0; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = m[i][0] * voxel[0] + m[i][1] * voxel[1] + m[i][2] * voxel[2] + m[i][3];
        }
        out
    }

    /// Anatomical direction of each voxel axis, e.g. "RAS" or "LPS".
    pub fn orientation(&self) -> String {
        orientation_letters(&self.world_from_voxel)
    }

    /// Same grid (dims and affine within `tol` mm)?
    pub fn matches(&self, other: &Geometry, tol: f64) -> bool {
        self.dims == other.dims
            && (0..3).all(|i| {
                (0..4).all(|j| {
                    (self.world_from_voxel[i][j] - other.world_from_voxel[i][j]).abs() <= tol
                })
            })
    }
}

pub fn identity() -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

pub fn orientation_letters(m: &Mat4) -> String {
    const POS: [char; 3] = ['R', 'A', 'S'];
    const NEG: [char; 3] = ['L', 'P', 'I'];
    let mut used = [false; 3];
    let mut out = String::new();
    for j in 0..3 {
        // Largest world component of this axis not taken by an earlier axis.
        let mut best = None;
        for i in 0..3 {
            if used[i] {
                continue;
            }
            let v = m[i][j];
            if best.is_none_or(|(_, b): (usize, f64)| v.abs() > b.abs()) {
                best = Some((i, v));
            }
        }
        let (i, v) = best.expect("three axes, three world directions");
        used[i] = true;
        out.push(if v >= 0.0 { POS[i] } else { NEG[i] });
    }
    out
}

/// 3×3 determinant of the rotation-scale part.
pub fn det3(m: &Mat4) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// NIfTI's quaternion form → affine (the `quatern_to_mat44` construction of the NIfTI-1 standard).
pub fn quatern_to_affine(
    b: f64,
    c: f64,
    d: f64,
    offset: [f64; 3],
    spacing: [f64; 3],
    qfac: f64,
) -> Mat4 {
    let mut a = 1.0 - (b * b + c * c + d * d);
    let (mut b, mut c, mut d) = (b, c, d);
    if a < 1e-7 {
        let n = (b * b + c * c + d * d).sqrt();
        if n > 0.0 {
            b /= n;
            c /= n;
            d /= n;
        }
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let s = [
        spacing[0],
        spacing[1],
        spacing[2] * if qfac < 0.0 { -1.0 } else { 1.0 },
    ];
    let mut m = identity();
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = r[i][j] * s[j];
        }
        m[i][3] = offset[i];
    }
    m
}

/// Affine → NIfTI quaternion (b, c, d), offset, spacing and qfac. The columns are normalised;
/// a left-handed affine gives qfac = −1 with the third column flipped.
pub fn affine_to_quatern(m: &Mat4) -> ([f64; 3], [f64; 3], [f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    let mut spacing = [0.0; 3];
    for j in 0..3 {
        let n = (0..3).map(|i| m[i][j].powi(2)).sum::<f64>().sqrt();
        spacing[j] = if n > 0.0 { n } else { 1.0 };
        for i in 0..3 {
            r[i][j] = if n > 0.0 {
                m[i][j] / n
            } else {
                (i == j) as u8 as f64
            };
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let trace = r11 + r22 + r33 + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
    }
    if a < 0.0 {
        b = -b;
        c = -c;
        d = -d;
        a = -a;
    }
    let _ = a;
    ([b, c, d], [m[0][3], m[1][3], m[2][3]], spacing, qfac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip_on_oblique_left_handed_affine() {
        // Rotation by 30° about z, spacing (0.7, 0.8, 2.5), third axis flipped, some offset.
        let (s, c) = 30f64.to_radians().sin_cos();
        let m: Mat4 = [
            [c * 0.7, -s * 0.8, 0.0, -10.0],
            [s * 0.7, c * 0.8, 0.0, 20.5],
            [0.0, 0.0, -2.5, 33.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let (q, off, sp, qfac) = affine_to_quatern(&m);
        assert_eq!(qfac, -1.0);
        let back = quatern_to_affine(q[0], q[1], q[2], off, sp, qfac);
        for i in 0..4 {
            for j in 0..4 {
                assert!(
                    (back[i][j] - m[i][j]).abs() < 1e-12,
                    "{i},{j}: {} vs {}",
                    back[i][j],
                    m[i][j]
                );
            }
        }
    }

    #[test]
    fn orientation_letters_follow_axis_directions() {
        assert_eq!(orientation_letters(&identity()), "RAS");
        let mut lps = identity();
        lps[0][0] = -1.0;
        lps[1][1] = -1.0;
        assert_eq!(orientation_letters(&lps), "LPS");
        // Coronal slices: voxel axes (x, z, y) in world order.
        let cor: Mat4 = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, -1.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(orientation_letters(&cor), "RSP");
    }
}
