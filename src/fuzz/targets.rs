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
pub const ALL: &[Target] = &[
    Target {
        name: "envelope",
        surface: "the protobuf SignedEnvelope from a client: decode, signed bytes, shape, strict Ed25519 verification, freshness",
        run: super::envelope,
        seeds: super::envelope_seeds,
    },
    Target {
        name: "jsonrpc",
        surface: "a verified payload's strict JSON-RPC parse: depth pre-scan, duplicate keys, numbers, escapes, surrogates, method table, tools/call params",
        run: super::jsonrpc,
        seeds: super::jsonrpc_seeds,
    },
    Target {
        name: "arguments",
        surface: "tools/call arguments for the EP server's real tools: sanitizer (default and normalize, each rule asserted) and the pinned inputSchema; the first byte picks the tool (below 0xF0), or 0xF0..=0xF7 resources/read params (URI scheme and traversal), 0xF8..=0xFF prompts/get params",
        run: super::arguments,
        seeds: super::arguments_seeds,
    },
    Target {
        name: "backend_output",
        surface: "backend output, first byte % 5: stdio line framing (the reader's MessageLines, limit from the next byte, whole and in 7-byte reads) and responses, SSE body, HTTP JSON body, tools/list screened and pinned as the router does (then fuzzed arguments after 0x1C against its schemas), tools/call result checks",
        run: super::backend_output,
        seeds: super::backend_output_seeds,
    },
    Target {
        name: "bridge",
        surface: "the bridge, first byte % 3: a host's message before forwarding, the gateway's answer or denial turned into the host's response (any JSON id from the input; a backend fault's message never shown, checked by differential), the HTTP listener's header checks",
        run: super::bridge,
        seeds: super::bridge_seeds,
    },
    Target {
        name: "certificate",
        surface: "a client certificate (DER) from the TLS handshake: the audit facts and the SPIFFE identity read from it",
        run: super::certificate,
        seeds: super::certificate_seeds,
    },
    Target {
        name: "csr",
        surface: "a PKCS#10 request (DER) to sign-csr or the enrollment service: parse, self-signature, key, CA and SAN checks; first byte 0x30 the request as received, any other a certificationRequestInfo signed here by a sample key (even P-256, odd Ed25519) to reach the checks after the signature",
        run: super::csr,
        seeds: super::csr_seeds,
    },
    Target {
        name: "enrollment",
        surface: "an Enroll or Renew request (protobuf; first byte % 4: Enroll, Renew, then both re-signed by the sample keys with the csr field a request info signed with the sample P-256 key): freshness, nonce, new key, proof signatures, CSR",
        run: super::enrollment,
        seeds: super::enrollment_seeds,
    },
    Target {
        name: "tlog",
        surface: "first byte % 7 picks: a signed note, a checkpoint, a witness add-checkpoint body, a receipt (JSON, verified), a cosignature answer, a consistency proof against a sample tree's roots, a sequence of add-checkpoint steps through the witness's decision (fork detection)",
        run: super::tlog,
        seeds: super::tlog_seeds,
    },
    Target {
        name: "audit_verify",
        surface: "`audit verify` on arbitrary audit files (first byte: key, witness key, --origin, --checkpoint flags; files split at 0x1C): line reading, the chain, v1-v3 checkpoints, Merkle heads, cosignatures, anchors",
        run: super::audit_verify,
        seeds: super::audit_verify_seeds,
    },
    Target {
        name: "config_files",
        surface: "the TOML files read at start (first byte % 4: config with [audit.witness], client registry merged with an enrolled-keys file after 0x1C, client profile, pin file): parse, resolve, validate; the config against its published schema",
        run: super::config_files,
        seeds: super::config_files_seeds,
    },
];
