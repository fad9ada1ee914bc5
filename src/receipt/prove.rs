//! `sealgate audit prove`: a receipt built offline from the audit files,
//! with no gateway: the tree rebuilt from every line from seq 0, the
//! request record found by its digest, the latest v3 checkpoint in the
//! files that covers it (its note checked against the log key, its size
//! against its seq and its root against the lines before it), and the
//! witnesses' cosignatures of that checkpoint when a `checkpoint_cosigned`
//! event holds them. The result verifies with [`super::verify_receipt`]
//! like one from the gateway.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use super::error::ProveError;
use super::wire::Receipt;
use crate::tlog::{
    inclusion_proof, leaf_hash, tree_hash, Checkpoint, KeyError, KeyName, MemoryTree,
    SignatureType, SignedNote, VerifierKey,
};

/// Longest line read; a longer one is not a line of the log.
const MAX_LINE: u64 = 1024 * 1024;

/// A receipt built from files, and where its checkpoint came from.
#[derive(Debug, Clone)]
pub struct ProvenReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// `file:line` of the checkpoint line it carries.
    pub checkpoint_at: String,
    /// Cosignatures added from a `checkpoint_cosigned` event.
    pub cosignatures: usize,
}

/// The audit log's note key: the audit public key under the log's
/// `origin` (`[audit] origin`, by default `<trust_domain>/sealgate-audit`).
pub fn log_verifier(
    origin: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<VerifierKey, KeyError> {
    Ok(VerifierKey::new(
        KeyName::new(origin)?,
        SignatureType::Ed25519,
        *key,
    ))
}

/// One line of the files, by its seq.
struct Line {
    at: String,
    bytes: Vec<u8>,
    json: Value,
}

/// Builds the receipt of the request record bound to `digest` from
/// `files` (any order; rotated files and the current one), vouched for by
/// the `log` key.
pub fn prove(
    files: &[impl AsRef<Path>],
    log: &VerifierKey,
    digest: &[u8; 32],
) -> Result<ProvenReceipt, ProveError> {
    let lines = read_lines(files)?;
    // Lines 0..prefix are all there.
    let prefix = (0u64..)
        .find(|s| !lines.contains_key(s))
        .unwrap_or(u64::MAX);
    let want = hex::encode(digest);
    let record = lines
        .iter()
        .find(|(_, l)| {
            str_of(&l.json, "type") == Some("request")
                && str_of(&l.json, "request_digest") == Some(want.as_str())
        })
        .map(|(seq, _)| *seq)
        .ok_or(ProveError::NotFound)?;
    if record >= prefix {
        return Err(ProveError::Gap { missing: prefix });
    }
    // The latest v3 checkpoint whose tree (the lines before it) is all here.
    let (size, line) = lines
        .range(record + 1..=prefix)
        .rev()
        .find(|(_, l)| {
            str_of(&l.json, "type") == Some("checkpoint") && l.json.get("note").is_some()
        })
        .ok_or_else(|| match lines.range(prefix..).next() {
            Some(_) => ProveError::Gap { missing: prefix },
            None => ProveError::NotCovered { seq: record },
        })?;
    let size = *size;
    let bad = |what: String| ProveError::BadCheckpoint {
        at: line.at.clone(),
        what,
    };
    let mut tree = MemoryTree::new();
    for l in lines.range(..size).map(|(_, l)| l) {
        tree.push(leaf_hash(&l.bytes));
    }
    let note_text =
        str_of(&line.json, "note").ok_or_else(|| bad("its note is not a string".into()))?;
    let note = SignedNote::parse(note_text.as_bytes())
        .map_err(|e| bad(format!("its note does not parse: {e}")))?;
    let verified = note
        .verify(std::slice::from_ref(log))
        .map_err(|e| bad(format!("its note is not signed by the log key: {e}")))?;
    let checkpoint = Checkpoint::from_note(&verified)
        .map_err(|e| bad(format!("its note is not a checkpoint: {e}")))?;
    if checkpoint.size() != size || checkpoint.origin() != log.name().as_str() {
        return Err(bad(format!(
            "its note signs size {} of origin {:?}; the line has seq {size} and the log is {:?}",
            checkpoint.size(),
            checkpoint.origin(),
            log.name().as_str()
        )));
    }
    if tree_hash(&tree, size)?.0 != *checkpoint.root_hash() {
        return Err(bad(
            "its root is not the head of the lines before it: the files were rewritten or forked"
                .into(),
        ));
    }
    let (note, cosignatures) = with_cosignatures(&lines, note, size)?;
    Ok(ProvenReceipt {
        receipt: Receipt {
            leaf_index: record,
            tree_size: size,
            record: lines
                .get(&record)
                .map(|l| l.bytes.clone())
                .unwrap_or_default(),
            inclusion_proof: inclusion_proof(&tree, record, size)?,
            checkpoint: note.to_bytes(),
        },
        checkpoint_at: line.at.clone(),
        cosignatures,
    })
}

/// The note with the cosignatures of the last `checkpoint_cosigned` event
/// for tree size `size`, if any.
fn with_cosignatures(
    lines: &BTreeMap<u64, Line>,
    note: SignedNote,
    size: u64,
) -> Result<(SignedNote, usize), ProveError> {
    let event = lines.values().rev().find(|l| {
        str_of(&l.json, "event") == Some("checkpoint_cosigned")
            && l.json.get("tree_size").and_then(Value::as_u64) == Some(size)
    });
    let Some(event) = event else {
        return Ok((note, 0));
    };
    let bad = |what: &str| ProveError::BadCheckpoint {
        at: event.at.clone(),
        what: what.to_owned(),
    };
    let cosignatures: Vec<&str> = event
        .json
        .get("cosignatures")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no cosignatures array"))?
        .iter()
        .map(|c| {
            c.as_str()
                .ok_or_else(|| bad("a cosignature is not a string"))
        })
        .collect::<Result<_, _>>()?;
    let mut bytes = note.to_bytes();
    for c in &cosignatures {
        bytes.extend_from_slice(c.as_bytes());
        bytes.push(b'\n');
    }
    let note = SignedNote::parse(&bytes)
        .map_err(|e| bad(&format!("its cosignatures do not make a note: {e}")))?;
    Ok((note, cosignatures.len()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Every line with a `seq`, by seq (torn fragments have none: they are not
/// leaves). The same line twice (a file given twice) is one line.
fn read_lines(files: &[impl AsRef<Path>]) -> Result<BTreeMap<u64, Line>, ProveError> {
    let mut lines = BTreeMap::new();
    for file in files {
        let path = file.as_ref();
        let err = |source| ProveError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut r = BufReader::new(std::fs::File::open(path).map_err(err)?);
        let mut n = 0u64;
        loop {
            let mut bytes = Vec::new();
            let read = (&mut r)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut bytes)
                .map_err(err)?;
            if read == 0 {
                break;
            }
            n += 1;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            } else if bytes.len() as u64 > MAX_LINE {
                // The rest of an over-long line, up to its newline.
                r.skip_until(b'\n').map_err(err)?;
                continue;
            }
            let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let Some(seq) = json.get("seq").and_then(Value::as_u64) else {
                continue;
            };
            let at = format!("{}:{n}", path.display());
            match lines.get(&seq) {
                Some(Line { bytes: b, .. }) if *b == bytes => {}
                Some(_) => return Err(ProveError::DuplicateSeq { at, seq }),
                None => {
                    lines.insert(seq, Line { at, bytes, json });
                }
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
#[path = "prove_tests.rs"]
mod tests;
