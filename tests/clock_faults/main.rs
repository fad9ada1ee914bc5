//! Wall-clock jumps while serving (issue 24, "Clock and resource faults"):
//! a real `sealgate serve` process whose wall clock libfaketime moves back
//! and forward by minutes (alone, and with its replay state in a real
//! redis-server, `shared_state.rs`), and the time-dependent parts that take `now` as
//! an argument driven through the same jumps. The guarantees: no replay is
//! accepted, honest clients are served again as soon as their clock and
//! the gateway's agree, enrollment tokens stay single-use and expiry
//! warnings stay sane.
//!
//! The unit tests beside the code cover the rest with an injected clock:
//! src/replay.rs (the replay window and its floor) and src/policy/anomaly/
//! tests/clock_jumps.rs (anomaly windows and the throttle rate). CRL grace
//! keeps no state across calls: its decision is a function of the time it
//! reads (src/tls/crl.rs `a_crl_past_its_grace_turns_on_expiry_enforcement`
//! drives it at times either side), so a jump moves it by the jump and a
//! jump back undoes it.

#[path = "../audit_common.rs"]
mod audit_common;

#[path = "../common/services.rs"]
#[allow(dead_code)]
mod services;

mod expiry;
mod serve;
mod shared_state;
mod tokens;
