//! Sizes, work split and parameter block of the selective-scan kernels (host side, no GPU).

use crate::error::ShapeError;

/// The order in which each direction walks the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOrder {
    /// Every direction walks positions 0..L.
    Sequential,
    /// SS2D cross-scan over a height × width map (K = 4): row-major, column-major and their
    /// reverses.
    CrossScan { height: usize, width: usize },
}

impl ScanOrder {
    /// Spatial index of the `pos`-th element visited by direction `k` (sequence length `len`).
    pub fn position(&self, k: usize, pos: usize, len: usize) -> usize {
        match *self {
            ScanOrder::Sequential => pos,
            ScanOrder::CrossScan { height, width } => {
                let q = if k & 2 != 0 { len - 1 - pos } else { pos };
                if k & 1 == 0 {
                    q
                } else {
                    let h = q % height;
                    let w = q / height;
                    h * width + w
                }
            }
        }
    }
}

/// Positions per checkpoint chunk: the forward pass saves the state entering each chunk and
/// the backward pass restarts from it. Must not exceed `MAX_CHUNK` in scan_backward.wgsl.
pub const CHUNK: usize = 32;
/// Invocations per workgroup of the one-channel-per-invocation kernels (reduce, carry, forward).
pub const CHANNEL_WORKGROUP: u32 = 64;
/// Invocations per workgroup of the backward apply kernel (channels × states).
pub const BACKWARD_WORKGROUP: u32 = 256;
/// States per register block (forward) and per backward workgroup; B, C and the checkpoints
/// are padded to a multiple of it.
pub const STATE_BLOCK: usize = 16;
/// Channels per backward workgroup.
pub const BACKWARD_CHANNELS: usize = BACKWARD_WORKGROUP as usize / STATE_BLOCK;
/// Forward work items (channel × group) the automatic split aims for.
const FORWARD_TARGET_ITEMS: usize = 1 << 18;
/// Backward workgroups the automatic split aims for.
const BACKWARD_TARGET_GROUPS: usize = 8192;
/// Fewest chunks one work item walks when the split is automatic: shorter walks cost more in
/// the reduce and carry passes than their extra parallelism gains (measured on an H100,
/// BENCHMARKS.md).
const MIN_AUTO_GROUP_CHUNKS: usize = 8;
/// Largest workgroup count per dispatch dimension WebGPU guarantees.
pub const MAX_WORKGROUPS_PER_DIM: usize = 65_535;

/// Everything the kernels need to know about one scan call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanGeometry {
    pub batch: usize,
    pub dirs: usize,
    pub u_dirs: usize,
    pub channels: usize,
    pub len: usize,
    pub states: usize,
    pub order: ScanOrder,
    pub n_chunks: usize,
    pub fwd_group_chunks: usize,
    pub fwd_groups: usize,
    pub bwd_group_chunks: usize,
    pub bwd_groups: usize,
    /// States padded to a multiple of [`STATE_BLOCK`].
    pub states_pad: usize,
    pub n_blocks: usize,
    pub n_egroups: usize,
}

fn split(n_chunks: usize, groups_wanted: usize) -> (usize, usize) {
    let groups_wanted = groups_wanted.clamp(1, n_chunks.max(1));
    let group_chunks = n_chunks.div_ceil(groups_wanted).max(1);
    (group_chunks, n_chunks.div_ceil(group_chunks).max(1))
}

impl ScanGeometry {
    /// Check shapes and choose the work split. `group_chunks` forces the number of chunks one
    /// work item walks (0: automatic, sized to the work available).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        u: [usize; 4],
        delta: [usize; 4],
        a: [usize; 2],
        b: [usize; 4],
        c: [usize; 4],
        d: usize,
        bias: usize,
        order: ScanOrder,
        group_chunks: usize,
    ) -> Result<Self, ShapeError> {
        let err = |m: String| ShapeError::new("selective scan", m);
        let [batch, dirs, len, channels] = delta;
        let states = a[1];
        if batch == 0 || dirs == 0 || len == 0 || channels == 0 || states == 0 {
            return Err(err(format!("empty input: delta {delta:?}, A {a:?}")));
        }
        if u[0] != batch || u[2] != len || u[3] != channels || (u[1] != 1 && u[1] != dirs) {
            return Err(err(format!(
                "u has shape {u:?}; expected [{batch}, 1 or {dirs}, {len}, {channels}] to match delta {delta:?}"
            )));
        }
        if a[0] != dirs * channels {
            return Err(err(format!(
                "A has shape {a:?}; expected [{}, N]",
                dirs * channels
            )));
        }
        for (name, s) in [("B", b), ("C", c)] {
            if s != [batch, dirs, len, states] {
                return Err(err(format!(
                    "{name} has shape {s:?}; expected [{batch}, {dirs}, {len}, {states}]"
                )));
            }
        }
        for (name, n) in [("D", d), ("delta bias", bias)] {
            if n != dirs * channels {
                return Err(err(format!(
                    "{name} has {n} values; expected {}",
                    dirs * channels
                )));
            }
        }
        if let ScanOrder::CrossScan { height, width } = order {
            if dirs != 4 || height * width != len {
                return Err(err(format!(
                    "cross-scan needs 4 directions over a {height}x{width} map (L = {}); got {dirs} directions, L = {len}",
                    height * width
                )));
            }
        }
        if batch * dirs > MAX_WORKGROUPS_PER_DIM {
            return Err(err(format!(
                "batch x directions = {} exceeds {MAX_WORKGROUPS_PER_DIM}; split the batch",
                batch * dirs
            )));
        }
        let n_chunks = len.div_ceil(CHUNK);
        if n_chunks > MAX_WORKGROUPS_PER_DIM {
            return Err(err(format!(
                "sequence length {len} is too long (at most {})",
                MAX_WORKGROUPS_PER_DIM * CHUNK
            )));
        }
        let states_pad = states.div_ceil(STATE_BLOCK) * STATE_BLOCK;
        let n_blocks = states_pad / STATE_BLOCK;
        let n_egroups = channels.div_ceil(BACKWARD_CHANNELS);
        if n_egroups * n_blocks > MAX_WORKGROUPS_PER_DIM {
            return Err(err(format!(
                "{channels} channels x {states} states is too large for one dispatch"
            )));
        }
        let (fwd_group_chunks, fwd_groups, bwd_group_chunks, bwd_groups) = if group_chunks > 0 {
            let (gc, g) = split(n_chunks, n_chunks.div_ceil(group_chunks));
            (gc, g, gc, g)
        } else {
            let cap = n_chunks.div_ceil(MIN_AUTO_GROUP_CHUNKS);
            let (fc, fg) = split(
                n_chunks,
                FORWARD_TARGET_ITEMS
                    .div_ceil(batch * dirs * channels)
                    .min(cap),
            );
            let (bc, bg) = split(
                n_chunks,
                BACKWARD_TARGET_GROUPS
                    .div_ceil(batch * dirs * n_egroups * n_blocks)
                    .min(cap),
            );
            (fc, fg, bc, bg)
        };
        Ok(Self {
            batch,
            dirs,
            u_dirs: u[1],
            channels,
            len,
            states,
            order,
            n_chunks,
            fwd_group_chunks,
            fwd_groups,
            bwd_group_chunks,
            bwd_groups,
            states_pad,
            n_blocks,
            n_egroups,
        })
    }

    /// The parameter block (see scan_common.wgsl) for a pass over `groups` groups of
    /// `group_chunks` chunks.
    pub fn words(&self, group_chunks: usize, groups: usize, reverse: bool) -> Vec<u32> {
        let (mode, height, width) = match self.order {
            ScanOrder::Sequential => (0, 0, 0),
            ScanOrder::CrossScan { height, width } => (1, height, width),
        };
        [
            self.batch,
            self.dirs,
            self.channels,
            self.len,
            self.states,
            mode,
            height,
            width,
            self.u_dirs,
            CHUNK,
            self.n_chunks,
            group_chunks,
            groups,
            reverse as usize,
            self.states_pad,
            self.n_blocks,
            self.n_egroups,
            self.coef_offset(),
        ]
        .iter()
        .map(|&v| v as u32)
        .collect()
    }

    /// Where coef starts in the packed B/C buffer (floats): after [B; C], (2·B, K, L, NP).
    pub fn coef_offset(&self) -> usize {
        2 * self.batch * self.dirs * self.len * self.states_pad
    }

    /// Floats of the packed B/C/coef buffer, rounded up to whole vec4s.
    pub fn bc_len(&self) -> usize {
        (self.coef_offset() + self.dirs * self.channels * (self.states + 2)).next_multiple_of(4)
    }

    /// Floats of the largest buffer one batch item needs (bytes / 4), to split batches that
    /// would exceed the device's storage-binding limit.
    pub fn floats_per_batch_item(&self) -> usize {
        let seq = self.dirs * self.len * self.channels;
        let st = self.dirs * self.len * self.states_pad;
        [
            self.u_dirs * self.len * self.channels,
            // [B; C] and coef (counted whole for each item: it is small).
            2 * st + self.dirs * self.channels * (self.states + 2),
            // The backward's grads: dud, then dpart.
            2 * self.n_blocks * seq
                + 2 * self.dirs * self.n_egroups * self.len * self.states_pad
                + self.dirs * self.bwd_groups * self.channels * self.states_pad,
            self.dirs * self.n_chunks * self.states_pad * self.channels,
            2 * self.dirs * self.fwd_groups.max(self.bwd_groups) * self.states_pad * self.channels,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(
        len: usize,
        states: usize,
        channels: usize,
        group_chunks: usize,
    ) -> Result<ScanGeometry, ShapeError> {
        ScanGeometry::new(
            [2, 1, len, channels],
            [2, 4, len, channels],
            [4 * channels, states],
            [2, 4, len, states],
            [2, 4, len, states],
            4 * channels,
            4 * channels,
            ScanOrder::Sequential,
            group_chunks,
        )
    }

    #[test]
    fn split_covers_every_chunk() {
        for len in [1, 31, 32, 33, 4096, 4999, 16384] {
            for forced in [0, 1, 2, 3, 7] {
                let g = geo(len, 16, 8, forced).unwrap();
                assert!(g.fwd_group_chunks * g.fwd_groups >= g.n_chunks);
                assert!(g.fwd_group_chunks * (g.fwd_groups - 1) < g.n_chunks);
                assert!(g.bwd_group_chunks * g.bwd_groups >= g.n_chunks);
                assert!(g.bwd_group_chunks * (g.bwd_groups - 1) < g.n_chunks);
            }
        }
    }

    #[test]
    fn states_pad_to_whole_blocks() {
        for (n, pad) in [(1, 16), (4, 16), (16, 16), (17, 32), (64, 64)] {
            let g = geo(10, n, 3, 0).unwrap();
            assert_eq!(g.states_pad, pad);
            assert_eq!(g.n_blocks * STATE_BLOCK, pad);
        }
    }

    #[test]
    fn mismatched_shapes_are_named() {
        let e = ScanGeometry::new(
            [2, 1, 10, 8],
            [2, 4, 10, 8],
            [32, 16],
            [2, 4, 10, 16],
            [2, 4, 9, 16],
            32,
            32,
            ScanOrder::Sequential,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("C has shape [2, 4, 9, 16]"), "{e}");
        let e = ScanGeometry::new(
            [1, 1, 12, 2],
            [1, 4, 12, 2],
            [8, 1],
            [1, 4, 12, 1],
            [1, 4, 12, 1],
            8,
            8,
            ScanOrder::CrossScan {
                height: 3,
                width: 5,
            },
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3x5 map"), "{e}");
    }
}
