//! Fuzzing entry points: one function per input surface that takes
//! arbitrary bytes, drives the same code the gateway and the CLI run on
//! untrusted input, and asserts the surface's invariants (never a panic,
//! a hang or unbounded memory; an accepted input is one a genuine party
//! could have made). The libFuzzer targets in fuzz/ are one line each over
//! these, and `tests/fuzz_corpus.rs` replays the committed corpus through
//! them on stable: the seeds, what long runs found (merged with
//! `scripts/fuzz.sh --keep`) and every input that once broke an invariant
//! (fuzz/regressions) stay regression tests. [`targets::ALL`] lists them; docs/THREAT-MODEL.md maps each input
//! surface to its target. Keys here are fixed sample keys, used nowhere
//! else.

mod arguments;
mod audit_verify;
mod backend_output;
mod bridge;
mod certificate;
mod config_files;
mod csr;
mod enrollment;
mod envelope;
mod ep;
mod jsonrpc;
mod pki_sample;
mod sample;
mod targets;
mod tlog;

pub use arguments::{arguments, arguments_seeds};
pub use audit_verify::{audit_verify, audit_verify_seeds};
pub use backend_output::{backend_output, backend_output_seeds};
pub use bridge::{bridge, bridge_seeds};
pub use certificate::{certificate, certificate_seeds};
pub use config_files::{config_files, config_files_seeds};
pub use csr::{csr, csr_seeds};
pub use enrollment::{enrollment, enrollment_seeds};
pub use envelope::{envelope, envelope_seeds};
pub use jsonrpc::{jsonrpc, jsonrpc_seeds};
pub use targets::{Target, ALL};
pub use tlog::{tlog, tlog_seeds};
