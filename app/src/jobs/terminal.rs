//! Progress on a terminal: one redrawn line with a bar, the percentage and an estimate of the
//! time left when stderr is a terminal; plain lines otherwise (one per stage and per tenth of
//! it), so logs of headless runs stay readable.

use super::Reporter;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

struct State {
    prefix: String,
    stage: String,
    /// Plain mode: the last tenth printed of the current stage.
    tenth: i32,
    /// When the current stage started (for the time left).
    started: Instant,
    /// Whether a bar line is on screen and must be cleared before a log line.
    drawn: bool,
    last_draw: Option<Instant>,
}

pub struct TerminalReporter {
    bar: bool,
    state: Mutex<State>,
}

impl Default for TerminalReporter {
    fn default() -> Self {
        Self::new()
    }
}

const WIDTH: usize = 30;

impl TerminalReporter {
    pub fn new() -> Self {
        TerminalReporter {
            bar: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                prefix: String::new(),
                stage: String::new(),
                tenth: -1,
                started: Instant::now(),
                drawn: false,
                last_draw: None,
            }),
        }
    }

    /// Names what the following progress belongs to (e.g. "[3/12] case_7.nii.gz").
    pub fn set_prefix(&self, prefix: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        s.prefix = prefix.to_string();
        s.stage.clear();
        s.tenth = -1;
    }

    /// Clears the bar (before the final report is printed).
    pub fn finish(&self) {
        let mut s = self.state.lock().expect("not poisoned");
        if s.drawn {
            eprint!("\r\x1b[2K");
            s.drawn = false;
        }
    }
}

/// "1 min 05 s"-style duration.
fn eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

impl Reporter for TerminalReporter {
    fn progress(&self, stage: &str, fraction: Option<f32>) -> bool {
        let mut s = self.state.lock().expect("not poisoned");
        if s.stage != stage {
            s.stage = stage.to_string();
            s.tenth = -1;
            s.started = Instant::now();
        }
        if self.bar {
            // Redraw at most 10 times a second.
            if s.last_draw.is_some_and(|t| t.elapsed().as_millis() < 100) {
                return true;
            }
            s.last_draw = Some(Instant::now());
            let f = fraction.unwrap_or(0.0).clamp(0.0, 1.0);
            let filled = (f * WIDTH as f32).round() as usize;
            let left = match fraction {
                Some(f) if f > 0.01 => {
                    let spent = s.started.elapsed().as_secs_f64();
                    format!(", {} left", eta(spent * (1.0 - f as f64) / f as f64))
                }
                _ => String::new(),
            };
            eprint!(
                "\r\x1b[2K{} {stage} [{}{}] {:3.0} %{left}",
                s.prefix,
                "=".repeat(filled),
                " ".repeat(WIDTH - filled),
                f * 100.0
            );
            let _ = std::io::stderr().flush();
            s.drawn = true;
        } else {
            let tenth = fraction.map(|f| (f * 10.0).floor() as i32).unwrap_or(0);
            if tenth > s.tenth {
                match fraction {
                    Some(f) => eprintln!("{} {stage}: {:.0} %", s.prefix, f * 100.0),
                    None => eprintln!("{} {stage}", s.prefix),
                }
                s.tenth = tenth;
            }
        }
        true
    }

    fn log(&self, line: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        if s.drawn {
            eprint!("\r\x1b[2K");
            s.drawn = false;
        }
        eprintln!("{line}");
    }

    fn cancelled(&self) -> bool {
        INTERRUPTED.load(Ordering::Relaxed)
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT) and SIGTERM a stop request: jobs on a [`TerminalReporter`] see
/// `cancelled()` and finish cleanly (training saves where it stands). A second signal ends the
/// process at once.
pub fn catch_interrupts() {
    #[cfg(unix)]
    {
        extern "C" fn on_signal(_: libc::c_int) {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                // Only async-signal-safe calls here.
                unsafe { libc::_exit(130) };
            }
        }
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_as_minutes_and_seconds() {
        assert_eq!(eta(5.4), "5 s");
        assert_eq!(eta(65.0), "1 min 05 s");
        assert_eq!(eta(-3.0), "0 s");
    }
}
