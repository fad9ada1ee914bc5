//! The memory watermark: while the process uses at least
//! [`WATERMARK_PERCENT`] of the memory it may use, new calls are refused
//! with `MEMORY_PRESSURE` (stage 0, beside `AUDIT_UNAVAILABLE`), so that the
//! gateway says so and keeps serving the calls it holds, instead of being
//! killed by the cgroup's OOM killer or aborting on a failed allocation in
//! the middle of them. Calls in flight are never cut; new calls are
//! admitted again once the use falls below the watermark.
//!
//! The limit and the use, the first that applies:
//! - cgroup v2: the process's own cgroup's `memory.max`, against
//!   `memory.current` less `inactive_file` (`memory.stat`): page cache the
//!   kernel reclaims before it kills anyone (the audit files' pages) is not
//!   counted as use. Limits set only on an ancestor cgroup are not seen.
//! - `RLIMIT_AS` (`ulimit -v`, `prlimit --as`): the soft limit, against the
//!   address space in use (`VmSize` of /proc/self/status).
//!
//! Neither set: nothing is ever refused. A reading (two or three small
//! files) is taken at most once per [`REFRESH`], by the call that finds the
//! last one stale; every other call loads two atomics. This module only
//! reads: it never frees, reserves or kills anything, and it never decides
//! about anything but admission.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// New calls are refused at this share (percent) of the limit. High enough
/// that a gateway at its normal working set is never near it; low enough
/// that the calls in flight (each bounded by `max_envelope_bytes` and the
/// backends' `max_result_bytes`) fit in what is left.
pub const WATERMARK_PERCENT: u64 = 90;

/// How old a reading may be before a call takes a new one.
pub const REFRESH: Duration = Duration::from_millis(100);

/// The memory the process uses and may use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// In use (see the module documentation for what is counted).
    pub used: u64,
    /// The limit.
    pub limit: u64,
    /// Where the figures come from: `cgroup` or `rlimit_as`.
    pub source: &'static str,
}

impl Usage {
    /// Whether the use is at or above `percent` of the limit.
    pub fn over(&self, percent: u64) -> bool {
        u128::from(self.used) * 100 >= u128::from(self.limit) * u128::from(percent)
    }

    /// The process's reading now; `None` when no limit applies.
    pub fn read() -> Option<Usage> {
        cgroup_v2().or_else(rlimit_as)
    }
}

static BASE: OnceLock<Instant> = OnceLock::new();
/// Milliseconds after [`BASE`] (plus one) of the last reading; 0: none yet.
static READ_AT: AtomicU64 = AtomicU64::new(0);
static OVER: AtomicBool = AtomicBool::new(false);
static USED: AtomicU64 = AtomicU64::new(0);
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Whether new calls are refused now for want of memory (a reading at most
/// [`REFRESH`] old). A change is logged once, with the figures.
pub fn over_watermark() -> bool {
    let base = BASE.get_or_init(Instant::now);
    let now = u64::try_from(base.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let last = READ_AT.load(Ordering::Relaxed);
    let stale = last == 0 || now.saturating_sub(last) >= REFRESH.as_millis() as u64;
    if stale
        && READ_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let usage = Usage::read();
        let over = usage.is_some_and(|u| u.over(WATERMARK_PERCENT));
        USED.store(usage.map_or(0, |u| u.used), Ordering::Relaxed);
        LIMIT.store(usage.map_or(0, |u| u.limit), Ordering::Relaxed);
        if OVER.swap(over, Ordering::Relaxed) != over {
            let (used, limit, source) =
                usage.map_or((0, 0, "none"), |u| (u.used, u.limit, u.source));
            if over {
                tracing::error!(memory.used = used, memory.limit = limit, memory.source = source, "memory use at {WATERMARK_PERCENT}% of the limit: new calls are refused with MEMORY_PRESSURE until it falls");
            } else {
                tracing::warn!(memory.used = used, memory.limit = limit, memory.source = source, "memory use below {WATERMARK_PERCENT}% of the limit again: new calls are admitted");
            }
        }
    }
    OVER.load(Ordering::Relaxed)
}

/// The last reading's (used, limit) in bytes, for the metrics; `None`
/// before the first reading or when no limit applies.
pub fn last_reading() -> Option<(u64, u64)> {
    let limit = LIMIT.load(Ordering::Relaxed);
    (limit > 0).then(|| (USED.load(Ordering::Relaxed), limit))
}

/// cgroup v2: the process's cgroup (`0::/path` in /proc/self/cgroup).
fn cgroup_v2() -> Option<Usage> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(cgroup_v2_path(&own)?);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let limit = read("memory.max")?.trim().parse::<u64>().ok()?;
    let current = read("memory.current")?.trim().parse::<u64>().ok()?;
    let inactive = read("memory.stat")
        .and_then(|s| stat_field(&s, "inactive_file"))
        .unwrap_or(0);
    Some(Usage {
        used: current.saturating_sub(inactive),
        limit,
        source: "cgroup",
    })
}

/// The relative path of the unified (v2) cgroup in /proc/self/cgroup's
/// text; `None` on a v1-only system.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/'))
}

/// One `name value` line of a cgroup `memory.stat`.
fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `RLIMIT_AS` (soft) against `VmSize`.
fn rlimit_as() -> Option<Usage> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _) = getrlimit(Resource::RLIMIT_AS).ok()?;
    if soft == RLIM_INFINITY {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Usage {
        used: status_kb(&status, "VmSize:")?.saturating_mul(1024),
        limit: soft,
        source: "rlimit_as",
    })
}

/// A `Name:  N kB` line of /proc/self/status, in kB.
fn status_kb(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_a_share_of_the_limit_without_overflow() {
        let u = |used, limit| Usage {
            used,
            limit,
            source: "test",
        };
        assert!(!u(89, 100).over(90));
        assert!(u(90, 100).over(90));
        assert!(u(u64::MAX, u64::MAX).over(90));
        assert!(!u(u64::MAX / 2, u64::MAX).over(90));
        assert!(u(1, 0).over(90), "a zero limit is always over");
    }

    #[test]
    fn the_figures_are_read_from_the_kernel_files() {
        assert_eq!(
            cgroup_v2_path("0::/system.slice/sealgate.service\n"),
            Some("system.slice/sealgate.service")
        );
        assert_eq!(cgroup_v2_path("4:memory:/x\n0::/\n"), Some(""));
        assert_eq!(cgroup_v2_path("4:memory:/x\n1:cpu:/\n"), None);
        let stat = "anon 100\nfile 5000\ninactive_file 4096\nactive_file 904\n";
        assert_eq!(stat_field(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_field(stat, "inactive"), None);
        let status = "Name:\tsealgate\nVmPeak:\t  300000 kB\nVmSize:\t  123456 kB\n";
        assert_eq!(status_kb(status, "VmSize:"), Some(123_456));
        assert_eq!(status_kb(status, "VmRSS:"), None);
    }

    #[test]
    fn this_process_reads_a_limit_only_when_one_is_set() {
        // The test runs without RLIMIT_AS; on a v2 cgroup with memory.max
        // the reading is that cgroup's, and its use is below its limit.
        if let Some(u) = Usage::read() {
            assert!(u.limit > 0 && u.used < u.limit, "{u:?}");
        }
    }
}
