//! The list of fuzz targets: name, entry point, seed generator, and the
//! surface each one covers. fuzz/Cargo.toml has one `[[bin]]` per entry and
//! `tests/fuzz_corpus.rs` checks the two lists agree.

/// One fuzz target.
pub struct Target {
    /// Its name: the cargo-fuzz binary and the corpus folder fuzz/corpus/NAME.
    pub name: &'static str,
    /// What untrusted input it covers, in a few words.
    pub surface: &'static str,
    /// Runs one input; panics only when an invariant breaks.
    pub run: fn(&[u8]),
    /// Seeds derived from real data (vectors, real listings, real files):
    /// committed under fuzz/corpus/NAME and checked to be there.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every fuzz target, in the order `scripts/fuzz.sh --all` runs them.
pub const ALL: &[Target] = &[Target {
    name: "envelope",
    surface: "the protobuf SignedEnvelope from a client: decode, signed bytes, shape, strict Ed25519 verification, freshness",
    run: super::envelope,
    seeds: super::envelope_seeds,
}, Target {
    name: "audit_verify",
    surface: "`audit verify` on arbitrary audit files (first byte: key, witness key, --origin, --checkpoint flags; files split at 0x1C): line reading, the chain, v1-v3 checkpoints, Merkle heads, cosignatures, anchors",
    run: super::audit_verify,
    seeds: super::audit_verify_seeds,
}, Target {
    name: "config_files",
    surface: "the TOML files read at start (first byte % 4: config with [audit.witness], client registry, client profile, pin file): parse, resolve, validate; the config against its published schema",
    run: super::config_files,
    seeds: super::config_files_seeds,
}];
