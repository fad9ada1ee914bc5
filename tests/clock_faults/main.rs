//! Wall-clock jumps while serving (issue 24, "Clock and resource faults"):
//! a real `sealgate serve` process whose wall clock libfaketime moves back
//! and forward by minutes, and the time-dependent parts that take `now` as
//! an argument driven through the same jumps. The guarantees: no replay is
//! accepted, honest clients are served again as soon as their clock and
//! the gateway's agree, enrollment tokens stay single-use and expiry
//! warnings stay sane.
//!
//! The unit tests beside the code cover the rest with an injected clock:
//! src/replay.rs (the replay window and its floor), src/policy/anomaly/
//! tests/clock_jumps.rs (anomaly windows and the throttle rate) and
//! src/tls/crl.rs (CRL grace).

#[path = "../audit_common.rs"]
mod audit_common;

mod serve;
mod tokens;
