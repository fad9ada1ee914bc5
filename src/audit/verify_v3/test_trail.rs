//! Test trails built as the writer builds them (the line of seq N carries
//! the note `Transparency::sign(N, head of lines 0..N-1)`), with
//! `checkpoint_cosigned` events as the witness task writes them, and the
//! ways to make them wrong: a tampered checkpoint, an edited record (what
//! the audit key's holder can re-sign), old cosignatures kept.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use super::super::chain::{
    checkpoint_line, checkpoint_line_v3, key_id, line_hash, sign_checkpoint_v2, sign_checkpoint_v3,
    CheckpointV2, CheckpointV3, Report, Verifier, GENESIS,
};
use super::super::transparency::Transparency;
use crate::tlog::{
    cosign, leaf_hash, Checkpoint, Frontier, Hash, KeyName, SignatureType, SignedNote, SignerKey,
    VerifierKey,
};

pub(crate) const ORIGIN: &str = "sealgate.test/audit";

/// When the test witnesses cosign (POSIX seconds).
pub(crate) const COSIGNED_AT: u64 = 1_700_000_000;

pub(crate) fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The audit key as the log's note signer.
pub(crate) fn note_signer() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("name"),
        SignatureType::Ed25519,
        &key().to_bytes(),
    )
}

/// Test witness `i` (a cosignature/v1 key).
pub(crate) fn witness(i: u8) -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(&format!("witness{i}.test/w")).expect("name"),
        SignatureType::CosignatureV1,
        &[100 + i; 32],
    )
}

/// Witness `i`'s public key.
pub(crate) fn witness_key(i: u8) -> VerifierKey {
    witness(i).verifier().clone()
}

/// `cp` signed by the audit key and cosigned by `witnesses`: what a
/// witness, the AuditService or `audit prove` hands out.
pub(crate) fn cosigned_note(cp: &Checkpoint, witnesses: &[u8]) -> Vec<u8> {
    let mut note =
        SignedNote::sign(cp.to_note_text().expect("text"), &note_signer()).expect("note");
    for i in witnesses {
        note.push(cosign(cp, &witness(*i), COSIGNED_AT).expect("cosign"))
            .expect("push");
    }
    note.to_bytes()
}

/// A line of a test trail.
#[derive(Clone, Copy, Debug)]
pub(crate) enum L {
    /// A request record (`"n":<seq>`).
    Rec,
    /// A v3 checkpoint with this reason, naming this first seq.
    Cp(&'static str, u64),
    /// A v2 checkpoint (an old gateway's) with this reason and first seq.
    Cp2(&'static str, u64),
    /// A `checkpoint_cosigned` event for this tree size, cosigned by
    /// witnesses 1 and 2.
    Cosigned(u64),
}

/// What a v3 checkpoint is made of, before its line is rendered: a test
/// changes it to make a wrong one.
pub(crate) struct Parts {
    /// The head both the note and the v3 signature carry.
    pub root: Hash,
    /// The note's tree size.
    pub size: u64,
    /// The origin both the note and the v3 signature carry.
    pub origin: String,
    /// Who signs the note.
    pub note_signer: SignerKey,
}

/// How to build a trail beyond its items.
pub(crate) struct Build<'a> {
    /// The first seq (prev: zeros at 0, else 0x11s).
    pub from: u64,
    /// Changes a v3 checkpoint's parts (seq, parts).
    pub tamper: &'a dyn Fn(u64, &mut Parts),
    /// Changes a record's body (seq, body without seq and prev).
    pub edit: &'a dyn Fn(u64, String) -> String,
    /// The checkpoints the witnesses saw (cosignatures kept from before a
    /// rewrite); `None`: the ones built here.
    pub witnessed: Option<&'a BTreeMap<u64, Checkpoint>>,
}

impl Default for Build<'_> {
    fn default() -> Self {
        Build {
            from: 0,
            tamper: &|_, _| {},
            edit: &|_, b| b,
            witnessed: None,
        }
    }
}

/// A built trail: its lines and each v3 checkpoint's note, by size.
pub(crate) struct Trail {
    pub lines: Vec<String>,
    pub heads: BTreeMap<u64, Checkpoint>,
}

/// Builds `items` as instance `ab` (see [`Build`]).
pub(crate) fn build_trail(b: &Build<'_>, items: &[L]) -> Trail {
    let k = key();
    let kid = key_id(&k.verifying_key());
    let t = Transparency::memory(ORIGIN, &k).expect("log");
    let mut tree = Frontier::new();
    let mut prev = if b.from == 0 { GENESIS } else { [0x11; 32] };
    let mut out = Trail {
        lines: Vec::new(),
        heads: BTreeMap::new(),
    };
    let mut records = 0;
    for (i, item) in items.iter().enumerate() {
        let seq = b.from + i as u64;
        let since = std::mem::replace(&mut records, 0);
        let p = hex::encode(prev);
        let line = match *item {
            L::Rec => {
                records = since + 1;
                let body = (b.edit)(
                    seq,
                    format!("\"type\":\"request\",\"instance\":\"ab\",\"n\":{seq}"),
                );
                format!("{{\"seq\":{seq},{body},\"prev\":\"{p}\"}}")
            }
            L::Cosigned(size) => {
                records = since + 1;
                let cp = b
                    .witnessed
                    .unwrap_or(&out.heads)
                    .get(&size)
                    .expect("a checkpoint of that size");
                let cosigs: Vec<String> = [1, 2]
                    .map(|w| {
                        let line = cosign(cp, &witness(w), COSIGNED_AT).expect("cosign");
                        line.encode().trim_end_matches('\n').to_string()
                    })
                    .to_vec();
                format!(
                    "{{\"seq\":{seq},\"type\":\"event\",\"instance\":\"ab\",\"cosignatures\":{},\"event\":\"checkpoint_cosigned\",\"tree_size\":{size},\"ts\":\"1970-01-01T00:00:00.005Z\",\"prev\":\"{p}\"}}",
                    serde_json::Value::from(cosigs)
                )
            }
            L::Cp2(reason, first) => {
                let c = v2(seq, &prev, reason, first);
                checkpoint_line(&c, since, &kid, &sign_checkpoint_v2(&k, &c))
            }
            L::Cp(reason, first) => {
                let c = v2(seq, &prev, reason, first);
                let mut parts = Parts {
                    root: tree.root(),
                    size: seq,
                    origin: ORIGIN.into(),
                    note_signer: note_signer(),
                };
                let writer = t.sign(seq, &parts.root).expect("sign");
                (b.tamper)(seq, &mut parts);
                let cp =
                    Checkpoint::new(&parts.origin, parts.size, parts.root.0).expect("checkpoint");
                let note = SignedNote::sign(cp.to_note_text().expect("text"), &parts.note_signer)
                    .expect("note");
                let note = String::from_utf8(note.to_bytes()).expect("utf-8");
                if b.from == 0 {
                    let ours = String::from_utf8(writer.note.to_bytes()).expect("utf-8");
                    let untouched = parts.root == tree.root()
                        && parts.size == seq
                        && parts.origin == ORIGIN
                        && parts.note_signer.verifier() == t.verifier();
                    assert_eq!(
                        untouched,
                        note == ours,
                        "the writer's note, unless tampered"
                    );
                }
                out.heads.insert(seq, cp);
                let c3 = CheckpointV3 {
                    v2: c,
                    root: &parts.root.0,
                    origin: &parts.origin,
                };
                checkpoint_line_v3(&c3, since, &kid, &sign_checkpoint_v3(&k, &c3), &note)
            }
        };
        prev = line_hash(line.as_bytes());
        tree.push(leaf_hash(line.as_bytes()));
        out.lines.push(line);
    }
    out
}

/// [`build_trail`]'s lines, from `from`, checkpoints `tamper`ed.
pub(crate) fn build(from: u64, items: &[L], tamper: impl Fn(u64, &mut Parts)) -> Vec<String> {
    build_trail(
        &Build {
            from,
            tamper: &tamper,
            ..Build::default()
        },
        items,
    )
    .lines
}

fn v2<'a>(seq: u64, prev: &'a [u8; 32], reason: &'a str, first: u64) -> CheckpointV2<'a> {
    CheckpointV2 {
        seq,
        ts_ms: 5,
        instance: "ab",
        prev,
        file_first_seq: first,
        reason,
    }
}

pub(crate) fn intact(from: u64, items: &[L]) -> Vec<String> {
    build(from, items, |_, _| {})
}

/// Verifies `files` (each a list of lines) with the audit key, the
/// `witnesses` and the `anchors`.
pub(crate) fn verify_with(
    files: &[&[String]],
    witnesses: Vec<VerifierKey>,
    anchors: Vec<super::super::chain::Anchor>,
) -> Report {
    let vk = key().verifying_key();
    let mut v = Verifier::new(Some(&vk)).with_witnesses(witnesses, anchors);
    for (fi, lines) in files.iter().enumerate() {
        v.start_file(&format!("f{fi}"));
        for (i, l) in lines.iter().enumerate() {
            v.line(&format!("f{fi}:{}", i + 1), l.as_bytes());
        }
    }
    v.finish()
}

/// Verifies `files` with the audit key.
pub(crate) fn verify_files(files: &[&[String]]) -> Report {
    verify_with(files, Vec::new(), Vec::new())
}

/// `lines` with every `prev` recomputed (what anyone can do, without the
/// key): a line after an edited checkpoint then fails its signature, an
/// edited record does not.
pub(crate) fn rechain(lines: &[String]) -> Vec<String> {
    let mut prev: Option<[u8; 32]> = None;
    let mut out = Vec::new();
    for l in lines {
        let line = match prev {
            None => l.clone(),
            Some(p) => {
                let (head, _) = l.rsplit_once(",\"prev\":\"").expect("prev");
                format!("{head},\"prev\":\"{}\"}}", hex::encode(p))
            }
        };
        prev = Some(line_hash(line.as_bytes()));
        out.push(line);
    }
    out
}
