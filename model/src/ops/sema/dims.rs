//! Sizes of a SEMA attention call and the RoPE table, shared by the kernels and their f64 twin
//! (`reference::sema`).

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// C = heads × head dim.
    pub channels: usize,
    pub heads: usize,
    /// Window extent per axis, already clamped to the map.
    pub win_h: usize,
    pub win_w: usize,
    pub rope: bool,
}

impl AttnDims {
    /// Square windows of side `window`, clamped to the map on each axis (a window at least as
    /// large as the map is full attention).
    pub fn new(
        batch: usize,
        height: usize,
        width: usize,
        channels: usize,
        heads: usize,
        window: usize,
        rope: bool,
    ) -> Result<Self, String> {
        if batch == 0 || height == 0 || width == 0 || heads == 0 || window == 0 {
            return Err(format!(
                "batch {batch}, map {height}×{width}, {heads} heads and window {window} must all be positive"
            ));
        }
        if !channels.is_multiple_of(heads) || !(channels / heads).is_multiple_of(2) {
            return Err(format!(
                "{channels} channels do not split into {heads} heads of an even size"
            ));
        }
        if rope && !channels.is_multiple_of(4) {
            return Err(format!(
                "2-D RoPE needs the channels to be a multiple of 4, not {channels}"
            ));
        }
        Ok(AttnDims {
            batch,
            height,
            width,
            channels,
            heads,
            win_h: window.min(height),
            win_w: window.min(width),
            rope,
        })
    }

    pub fn tokens(&self) -> usize {
        self.height * self.width
    }

    pub fn head_dim(&self) -> usize {
        self.channels / self.heads
    }

    pub fn windows_x(&self) -> usize {
        self.width.div_ceil(self.win_w)
    }

    pub fn windows(&self) -> usize {
        self.height.div_ceil(self.win_h) * self.windows_x()
    }

    /// Token indices (row-major map order) of window `index`, row-major inside the window.
    pub fn window_tokens(&self, index: usize) -> Vec<usize> {
        let r0 = (index / self.windows_x()) * self.win_h;
        let c0 = (index % self.windows_x()) * self.win_w;
        let mut out = Vec::new();
        for r in r0..(r0 + self.win_h).min(self.height) {
            for c in c0..(c0 + self.win_w).min(self.width) {
                out.push(r * self.width + c);
            }
        }
        out
    }
}

/// θ_κ = 10000^(−κ / k_max), k_max = C/4 (MLLA's 2-D RoPE).
pub fn rope_theta(channels: usize, kappa: usize) -> f64 {
    let kmax = channels / 4;
    10000f64.powf(-(kappa as f64) / kmax as f64)
}

/// (cos, sin) table for positions 0..max(H, W): `[(pos·k_max + κ)·2 + {0, 1}]`.
pub fn rope_table(positions: usize, channels: usize) -> Vec<f64> {
    let kmax = channels / 4;
    let mut t = Vec::with_capacity(positions * kmax * 2);
    for pos in 0..positions {
        for kappa in 0..kmax {
            let a = pos as f64 * rope_theta(channels, kappa);
            t.push(a.cos());
            t.push(a.sin());
        }
    }
    t
}
