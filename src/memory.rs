//! The memory watermark: while the process uses at least
//! [`WATERMARK_PERCENT`] of the memory it may use, new calls are refused
//! with `MEMORY_PRESSURE` (stage 0, beside `AUDIT_UNAVAILABLE`), so that the
//! gateway says so and keeps serving the calls it holds, instead of being
//! killed by the cgroup's OOM killer or aborting on a failed allocation in
//! the middle of them. Calls in flight are never cut; new calls are
//! admitted again once the use falls below the watermark.
//!
//! Only the gateway process's own memory is counted, never its cgroup's:
//! a stdio backend runs in the same cgroup, and counting its memory (or its
//! tmpfs files, or page cache) would let one client make one backend hold
//! memory and so have the gateway refuse every call from every client, for
//! as long as the child holds it. A backend that grows is the cgroup OOM
//! killer's to end (it picks the largest process, the child), not this
//! watermark's. The limit and the use, the first that applies:
//! - cgroup v2: the process's own cgroup's `memory.max`, against the
//!   process's resident anonymous and shared memory (`RssAnon` + `RssShmem`
//!   of /proc/self/status): what the cgroup is charged for this process and
//!   cannot reclaim. File pages (`RssFile`: the mapped binary; the audit
//!   files' page cache) are reclaimed before anyone is killed, and
//!   `VmSize` is reserved address space (a malloc arena per thread), not
//!   memory. Kernel memory charged for the process (socket buffers) is not
//!   in these figures: part of what the watermark's remaining 10% is for.
//!   Limits set only on an ancestor cgroup are not seen.
//! - `RLIMIT_AS` (`ulimit -v`, `prlimit --as`): the soft limit, against the
//!   address space in use (`VmSize` of /proc/self/status), which is what
//!   that limit limits (per process: a child's is its own).
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
/// that a gateway at its normal working set is never near it. What is left
/// holds the calls in flight. Nothing sizes them to fit: their number is
/// bounded by `transport.max_connections` × `max_concurrent_streams` (and
/// per client by a tier's `max_concurrent_calls`), the size of each by
/// `max_envelope_bytes` on the way in and, on the way back, by the
/// backends' read limits (16 MiB for a stdio line or an HTTP body, parsed
/// whole; `[results] max_bytes` is checked on the parsed result, before
/// any filter). docs/OPERATIONS.md "Resource limits" says how to size it.
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
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    cgroup_v2_at(std::path::Path::new("/sys/fs/cgroup"), &own, &status)
}

/// The cgroup v2 reading with the cgroup hierarchy mounted at `root`, the
/// process's /proc/self/cgroup text `own` and its /proc/self/status text
/// `status`: the cgroup's limit against the process's own memory only.
fn cgroup_v2_at(root: &std::path::Path, own: &str, status: &str) -> Option<Usage> {
    let dir = root.join(cgroup_v2_path(own)?);
    let limit = std::fs::read_to_string(dir.join("memory.max"))
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Usage {
        used: own_memory(status)?,
        limit,
        source: "cgroup",
    })
}

/// The process's resident anonymous and shared memory, in bytes, from its
/// /proc/self/status text (`RssShmem` absent counts as 0).
fn own_memory(status: &str) -> Option<u64> {
    let anon = status_kb(status, "RssAnon:")?;
    let shmem = status_kb(status, "RssShmem:").unwrap_or(0);
    Some(anon.saturating_add(shmem).saturating_mul(1024))
}

/// The relative path of the unified (v2) cgroup in /proc/self/cgroup's
/// text; `None` on a v1-only system.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/'))
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
        let status = "Name:\tsealgate\nVmPeak:\t  300000 kB\nVmSize:\t  123456 kB\n";
        assert_eq!(status_kb(status, "VmSize:"), Some(123_456));
        assert_eq!(status_kb(status, "VmRSS:"), None);
        let status =
            "VmSize:\t 900000 kB\nRssAnon:\t 1000 kB\nRssFile:\t 5000 kB\nRssShmem:\t 24 kB\n";
        assert_eq!(own_memory(status), Some(1024 * 1024));
        assert_eq!(own_memory("RssAnon:\t 2 kB\n"), Some(2048));
        assert_eq!(own_memory("VmSize:\t 2 kB\n"), None);
    }

    /// The attack of review-rt #2: a stdio backend (same cgroup) holds
    /// almost all of `memory.max`. The gateway's own use is what counts, so
    /// it is not over; its own use near the limit still is.
    #[test]
    fn a_cgroup_filled_by_another_process_is_not_the_gateways_use() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("system.slice/sealgate.service");
        std::fs::create_dir_all(&dir).expect("cgroup dir");
        let limit: u64 = 1024 * 1024 * 1024;
        std::fs::write(dir.join("memory.max"), format!("{limit}\n")).expect("max");
        // What the whole cgroup uses: 99% of the limit, nearly all of it
        // the backend child's anonymous memory and tmpfs files.
        std::fs::write(
            dir.join("memory.current"),
            format!("{}\n", limit / 100 * 99),
        )
        .expect("current");
        std::fs::write(
            dir.join("memory.stat"),
            "anon 1000000000\nshmem 50000000\ninactive_file 0\n",
        )
        .expect("stat");
        let own = "0::/system.slice/sealgate.service\n";
        let small = "RssAnon:\t 102400 kB\nRssFile:\t 900000 kB\nRssShmem:\t 0 kB\n";
        let u = cgroup_v2_at(root.path(), own, small).expect("a reading");
        assert_eq!(
            (u.used, u.limit, u.source),
            (100 * 1024 * 1024, limit, "cgroup")
        );
        assert!(!u.over(WATERMARK_PERCENT), "{u:?}");
        let big = "RssAnon:\t 943718 kB\nRssShmem:\t 1024 kB\n";
        let u = cgroup_v2_at(root.path(), own, big).expect("a reading");
        assert!(u.over(WATERMARK_PERCENT), "{u:?}");
        // No limit on the cgroup ("max"): no reading from it.
        std::fs::write(dir.join("memory.max"), "max\n").expect("max");
        assert_eq!(cgroup_v2_at(root.path(), own, big), None);
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
