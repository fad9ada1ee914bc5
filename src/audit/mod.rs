//! The audit trail: one record for every request, allowed or denied, and
//! one for every security event, hash-chained, checkpointed with the audit
//! key, and delivered to every configured sink before the call is answered.
//!
//! A record says who called (client id, certificate serial and
//! fingerprint, key id, peer address), what (method, tool name, the digest
//! of the signed request bytes), and how it ended (outcome, reason, stage,
//! backend, duration). It must never hold argument values, payloads, keys,
//! signatures or any other personal data: the record type has no field that
//! could carry them.
//!
//! The request path fills a record and hands it to a bounded queue
//! ([`AuditLog::commit`]); the writer thread frames, chains, signs and
//! writes, and answers once every sink that must hold the record does.
//! When every sink is a local file without a per-record fsync and the
//! writer is free, the request writes its record itself (a page-cache
//! write, no thread hop); it never waits for a busy writer. This module
//! never blocks a request on an fsync or a network, and never drops a
//! record without saying so in the trail (docs/AUDIT.md).
//!
//! Layout, each file using only files listed before it: `timestamp` (the
//! trail's time format); `record` (a request's record) and `event` (event
//! records); `config` (`[audit]`); `chain` (hashes and checkpoint
//! signatures), then `verify` (with `verify_v3` and
//! `verify_witness`) and `tail`, which read a chain; `sink` (the
//! trait every destination implements); the sinks `file` (then `seal`,
//! which wraps it), `syslog` (syslog and HTTP) and `spool`; `slot` (a
//! sink's backlog and retries); `handover`; `shared` (what the handle and
//! the writer share); `transparency` (the Merkle log's shared handle),
//! `catchup` (the log's store brought level with the files at start) and
//! `merkle` (the writer's side of the log); `writer` (framing, chaining,
//! checkpoints, delivery);
//! `thread` (the writer's loop); `log` (the [`AuditLog`] handle the gateway
//! calls).

mod catchup;
pub mod chain;
pub mod config;
mod event;
mod file;
mod handover;
mod log;
mod merkle;
mod record;
mod seal;
mod shared;
mod sink;
mod slot;
mod spool;
mod syslog;
mod tail;
mod thread;
mod timestamp;
pub mod transparency;
mod verify;
mod verify_read;
mod verify_v3;
mod verify_witness;
pub mod witness_config;
mod writer;

pub use config::{AuditConfig, Fsync, OnFailure, SinkConfig, SyslogTransport};
pub use event::{AnomalyEvent, RefusalSummary, SecurityEvent};
pub use log::AuditLog;
pub use record::{AuditRecord, CertFacts, Fault, Outcome};
pub use shared::SinkState;
pub use timestamp::{rfc3339_ms, unix_ms};
