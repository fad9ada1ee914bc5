//! The process group a stdio child leads, and how it ends.
//!
//! The child is started as the leader of its own group (pgid = its pid), so
//! one SIGKILL to the group also ends the grandchildren it started (npx, a
//! shell). A pgid is a pid, though: once the leader is reaped and no other
//! member is left, the kernel may give the number to a new process, and
//! that one may lead a group of its own (the next backend child, any
//! `setsid` daemon); a `killpg` then kills a stranger. Checking `getpgid`
//! first cannot help (it races, and a stranger leading a group of that
//! number passes it). What is sound is order: the kernel reuses no pid,
//! and so no pgid, while an unreaped process (a zombie too) holds it. So
//! the group is signalled only while its leader is unreaped: the
//! supervisor learns of the exit without reaping ([`exited`]: `waitid`
//! with `WNOWAIT`), ends the group ([`Group::end`]) and only then reaps;
//! the other callers ([`Group::kill`], at stop or drop) signal it under
//! the same lock, which [`Group::end`] clears before the reaping.

use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How often the exit is looked for when no SIGCHLD stream could be had.
const POLL: Duration = Duration::from_millis(200);

/// The group of one child, while its leader is unreaped.
pub(super) struct Group(Mutex<Option<Pid>>);

impl Group {
    /// The group `pid` leads (`None`, or a pid ≤ 1: nothing to signal).
    pub(super) fn new(pid: Option<u32>) -> Group {
        Group(Mutex::new(as_pid(pid)))
    }

    /// SIGKILL to the whole group, while its leader is unreaped; nothing
    /// once [`Group::end`] ran.
    pub(super) fn kill(&self) {
        if let Some(pid) = *self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }

    /// SIGKILL to the whole group, for the last time: called by the one
    /// that reaps the leader, right before it does.
    pub(super) fn end(&self) {
        if let Some(pid) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

/// SIGKILL to the group `pid` leads; only for a child not yet reaped (one
/// whose `Child` handle has not been waited on).
pub(super) fn kill_unreaped(pid: Option<u32>) {
    if let Some(pid) = as_pid(pid) {
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

fn as_pid(pid: Option<u32>) -> Option<Pid> {
    pid.and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// Returns once the child `pid` has exited, leaving it unreaped (a zombie
/// that still holds its pid and its group's number). Woken by SIGCHLD,
/// looked at again every [`POLL`] where none can be had.
pub(super) async fn exited(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw) else {
        return;
    };
    // Subscribed before the first look: an exit after it wakes us.
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            // Exited (or no longer ours to wait for).
            _ => return,
        }
        match sigchld.as_mut() {
            Some(s) => {
                let _ = tokio::time::timeout(POLL * 5, s.recv()).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exited_child_is_seen_unreaped_and_its_group_ended_before_reaping() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 600 & exit 3"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pid = child.id();
        let group = Group::new(pid);
        tokio::time::timeout(Duration::from_secs(10), exited(pid))
            .await
            .expect("the exit is seen");
        // Not reaped: the zombie still holds the pid.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.expect("pid")))
            .expect("the zombie is still there");
        let state = stat.rsplit_once(')').expect("comm").1.trim_start();
        assert!(state.starts_with('Z'), "{stat}");
        // The group (the background sleep) ends; then the leader is reaped.
        group.end();
        let status = child.wait().await.expect("reaped");
        assert_eq!(status.code(), Some(3));
        // After `end`, `kill` signals nothing.
        group.kill();
        assert!(group.0.lock().expect("lock").is_none());
    }
}
