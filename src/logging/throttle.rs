//! Rate limits for log lines a client can trigger at will (refused
//! connections, slow consumers, quota refusals): each call site writes at
//! most one line a second; the lines it held back meanwhile are counted and
//! summarised on its next line ("... (and N more like this in the last X s)").
//!
//! Use the macros, one per level: `crate::warn_limited!(...)`,
//! `crate::info_limited!(...)`, `crate::debug_limited!(...)`, with the
//! arguments of `log::warn!` and friends. Each call site has its own
//! [`Throttle`], shared by every shard.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// One line per call site per this many milliseconds.
pub const WINDOW_MS: u64 = 1000;

/// The state of one call site.
pub struct Throttle {
    /// Process-clock millisecond from which the next line may be written.
    next_ms: AtomicU64,
    /// When the last line was written.
    last_ms: AtomicU64,
    /// Lines held back since then.
    held: AtomicU64,
}

/// What was held back before a written line; prints as the line's tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    pub lines: u64,
    pub over_ms: u64,
}

impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines == 0 {
            return Ok(());
        }
        let secs = self.over_ms.div_ceil(1000).max(1);
        write!(
            f,
            " (and {} more like this in the last {secs} s)",
            self.lines
        )
    }
}

impl Throttle {
    #[allow(clippy::new_without_default)] // const, for the per-call-site statics
    pub const fn new() -> Throttle {
        Throttle {
            next_ms: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; counts it as held back if not.
    pub fn admit(&self) -> Option<HeldBack> {
        self.admit_at(clock_ms())
    }

    /// [`Throttle::admit`] at process-clock millisecond `now_ms`.
    pub fn admit_at(&self, now_ms: u64) -> Option<HeldBack> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let won = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + WINDOW_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !won {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let last = self.last_ms.swap(now_ms, Ordering::Relaxed);
        Some(HeldBack {
            lines: self.held.swap(0, Ordering::Relaxed),
            over_ms: now_ms.saturating_sub(last),
        })
    }
}

/// Milliseconds since the first throttled line of the process.
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// `log::log!` at `$level`, at most once a second from this call site.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static THROTTLE: $crate::logging::Throttle = $crate::logging::Throttle::new();
        if ::log::log_enabled!($level) {
            if let Some(held) = THROTTLE.admit() {
                ::log::log!($level, "{}{}", format_args!($($arg)+), held);
            }
        }
    }};
}

/// `log::warn!`, at most once a second from this call site.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => { $crate::log_limited!(::log::Level::Warn, $($arg)+) };
}

/// `log::info!`, at most once a second from this call site.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => { $crate::log_limited!(::log::Level::Info, $($arg)+) };
}

/// `log::debug!`, at most once a second from this call site.
#[macro_export]
macro_rules! debug_limited {
    ($($arg:tt)+) => { $crate::log_limited!(::log::Level::Debug, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_then_a_summary_of_the_rest() {
        let t = Throttle::new();
        let first = t.admit_at(5).expect("the first line is written");
        assert_eq!(first.lines, 0);
        assert_eq!(first.to_string(), "");
        for ms in [6, 100, 900, 1004] {
            assert_eq!(t.admit_at(ms), None, "line at {ms} ms written");
        }
        let next = t.admit_at(1005).expect("a second later a line is written");
        assert_eq!(
            next,
            HeldBack {
                lines: 4,
                over_ms: 1000
            }
        );
        assert_eq!(next.to_string(), " (and 4 more like this in the last 1 s)");
        // Quiet for a while: the next line is written at once, with nothing held.
        let later = t.admit_at(60_000).unwrap();
        assert_eq!(later.lines, 0);
    }

    #[test]
    fn threads_share_one_call_site() {
        let t = Throttle::new();
        let written: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).filter(|_| t.admit_at(10).is_some()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(written, 1);
        assert_eq!(t.admit_at(1010).unwrap().lines, 3999);
    }
}
