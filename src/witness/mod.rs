//! Witnessing (c2sp.org/tlog-witness): the gateway's client of a witness.
//! (Placeholder until t23-witness's module lands; its mod.rs replaces
//! this one, with `pub mod client;` added.)

pub mod client;
