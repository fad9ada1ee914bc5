//! `sealgate audit verify`: checks audit files without the gateway: the
//! hash chain across the files given (in order), every checkpoint's
//! signature with the audit public key, the Merkle heads of v3
//! checkpoints, and with witness keys the cosignatures recorded in the
//! trail and cosigned checkpoints held outside (`--checkpoint`); reports
//! the first broken point.
//!
//! Exit status: 0 verified and sealed (the last line is a v2 or v3 closing
//! or rotation checkpoint and every line is vouched for by the audit key),
//! or with `--open-tail` every line but the live tail after the last
//! checkpoint is; 1 broken, 2 a usage error (signed checkpoints and no
//! `--public-key`; a witness key or `--checkpoint` that cannot be read or
//! does not verify), 3 verified but not sealed (the gateway is running, was
//! killed, the tail was truncated, lines before a restart are not vouched,
//! only v1 checkpoints, or nothing at all is vouched: no key, no
//! checkpoint). docs/AUDIT.md has the format and the rules.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use sealgate::audit::chain::{distinct, read_file, Anchor, Flow, Verifier};
use sealgate::tlog::{SignatureType, VerifierKey, MAX_KEY_TEXT_BYTES, MAX_NOTE_BYTES};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify audit files: the chain, every checkpoint signature, the tail.
    Verify(VerifyArgs),
    /// Run a witness (c2sp.org/tlog-witness) that cosigns audit logs'
    /// checkpoints, or --show the last one it cosigned for a log.
    Witness(super::witness::WitnessArgs),
    /// Generate a witness's cosignature key (skey file, 0600) and print
    /// its public key (vkey).
    WitnessKey(super::witness::WitnessKeyArgs),
    /// Build a client's receipt from audit files, offline: the record of a
    /// request digest, its inclusion proof and the latest checkpoint.
    Prove(super::prove::ProveArgs),
    /// Print the audit log's public key (vkey) for witnesses and clients,
    /// from the audit public key file and the log's origin.
    LogKey(super::logkey::LogKeyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The audit public key file (`<audit key>.pub`: key_id, public_key).
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// A live file: an unsealed tail after the last checkpoint is not an
    /// error (it is still reported).
    #[arg(long)]
    open_tail: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// A witness's public key (cosignature/v1 vkey text, or a file
    /// holding it; repeatable): the cosignatures it made in
    /// `checkpoint_cosigned` events must verify.
    #[arg(long, value_name = "VKEY")]
    witness_key: Vec<String>,
    /// A cosigned checkpoint note held outside the host (from a witness,
    /// the AuditService or `audit prove`; repeatable): the trail must
    /// hold its lines, with its head.
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<PathBuf>,
    /// Cosignatures by the witness keys given a `--checkpoint` needs
    /// (a key given twice counts once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    witness_quorum: usize,
    /// The log's origin every v3 checkpoint and `--checkpoint` must name
    /// (without it: the first v3 checkpoint's).
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// The files, oldest first (rotations, then the current file).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Witness(args) => super::witness::witness(args),
        AuditCommand::WitnessKey(args) => super::witness::witness_key(args),
        AuditCommand::Prove(args) => super::prove::run(args),
        AuditCommand::LogKey(args) => super::logkey::run(args),
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let key = match &args.public_key {
        Some(p) => Some(load_public_key(p)?),
        None => None,
    };
    let (witnesses, anchors) = match witnessing(&args, key.as_ref()) {
        Ok(w) => w,
        Err(what) => {
            if args.json {
                out!("{}", serde_json::json!({"ok": false, "usage_error": what}));
            }
            eprintln!("error: {what}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut v = Verifier::new(key.as_ref()).with_witnesses(witnesses, anchors);
    if let Some(o) = &args.origin {
        v = v.with_origin(o);
    }
    for file in &args.files {
        let f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        let name = file.display().to_string();
        let flow = read_file(&mut v, &name, BufReader::new(f)).with_context(|| name.clone())?;
        if flow == Flow::Stop {
            break;
        }
    }
    let report = v.finish();
    if let Some(at) = &report.needs_key {
        let what = format!(
            "{at} is a signed checkpoint: this trail has signed checkpoints, and without the audit public key nothing about it can be verified; give it with --public-key (the `<audit key>.pub` file, e.g. audit.signing.key.pub)"
        );
        if args.json {
            out!(
                "{}",
                serde_json::json!({"ok": false, "usage_error": what, "needs_key_at": at})
            );
        }
        eprintln!("error: {what}");
        return Ok(ExitCode::from(2));
    }
    // v3 heads need every line from seq 0: the files before were not given.
    let heads_not_checked = (report.v3_checkpoints > report.heads_checked).then(|| {
        format!(
            "tree head not checked: the files before seq {} are missing",
            report.first_seq.unwrap_or_default()
        )
    });
    // Cosignatures on heads not compared with the lines bind none of them.
    let witnessed_not_checked = (report.witness.cosignatures_head_unchecked > 0).then(|| {
        format!(
            "witnessed, but not checked against the lines: the files before seq {} are missing",
            report.first_seq.unwrap_or_default()
        )
    });
    if args.json {
        out!(
            "{}",
            serde_json::json!({
                "ok": report.broken.is_none(),
                "broken_at": report.broken.as_ref().map(|b| b.at.clone()),
                "broken": report.broken.as_ref().map(|b| b.what.clone()),
                "lines": report.lines,
                "vouched": report.vouched,
                "unvouched_lines": report.unvouched_lines,
                "unvouched": report.unvouched.iter().map(|u| serde_json::json!({
                    "instance": u.instance,
                    "from": u.from,
                    "to": u.to,
                    "lines": u.lines,
                    "what": u.describe(),
                })).collect::<Vec<_>>(),
                "v1_checkpoints": report.v1_checkpoints,
                "v3_checkpoints": report.v3_checkpoints,
                "heads_checked": report.heads_checked,
                "heads_not_checked": heads_not_checked,
                "tree_size": report.tree_size,
                "root": report.root,
                "origins": report.origins,
                "witness": {
                    "cosigned_events": report.witness.cosigned_events,
                    "cosignatures_verified": report.witness.cosignatures_verified,
                    "cosigned_unchecked": report.witness.cosigned_unchecked,
                    "cosigned_too_old": report.witness.cosigned_too_old,
                    "cosignatures_head_unchecked": report.witness.cosignatures_head_unchecked,
                    "not_checked_against_lines": witnessed_not_checked,
                    "witnessed_size": report.witness.witnessed_size,
                    "checkpoints_matched": report.witness.anchors,
                },
                "files": report.files.iter().map(|f| serde_json::json!({
                    "file": f.name,
                    "lines": f.lines,
                    "first_seq": f.first_seq,
                    "last_seq": f.last_seq,
                    "checkpoints": f.checkpoints,
                    "head_vouched": f.head_vouched,
                    "sealed": f.sealed,
                })).collect::<Vec<_>>(),
                "first_seq": report.first_seq,
                "last_seq": report.last_seq,
                "checkpoints": report.checkpoints,
                "last_checkpoint": report.last_checkpoint,
                "unsigned_tail": report.unsigned_tail,
                "torn": report.torn,
                "sealed": report.sealed,
            })
        );
    } else if let Some(b) = &report.broken {
        out!("BROKEN at {}: {}", b.at, b.what);
    } else {
        out!(
            "ok: {} lines, seq {}..{}, {} checkpoint signatures valid, {} torn line(s) acknowledged",
            report.lines,
            report.first_seq.map_or("-".into(), |s| s.to_string()),
            report.last_seq.map_or("-".into(), |s| s.to_string()),
            report.checkpoints,
            report.torn
        );
        for f in &report.files {
            out!(
                "  {}: {} line(s), seq {}..{}, {} checkpoint(s){}{}",
                f.name,
                f.lines,
                f.first_seq.map_or("-".into(), |s| s.to_string()),
                f.last_seq.map_or("-".into(), |s| s.to_string()),
                f.checkpoints,
                if f.head_vouched || f.lines == 0 || key.is_none() {
                    ""
                } else {
                    ", head not vouched for (v1 checkpoints only)"
                },
                if f.sealed { ", sealed" } else { "" }
            );
        }
        if report.v3_checkpoints > 0 {
            out!(
                "  Merkle log {}: {} v3 checkpoint(s), {} tree head(s) checked against the lines; tree size {}{}",
                report.origins.join(", "),
                report.v3_checkpoints,
                report.heads_checked,
                report.tree_size,
                report
                    .root
                    .as_ref()
                    .map_or(String::new(), |r| format!(", root {r}"))
            );
        }
        if let Some(what) = &heads_not_checked {
            out!("  {what}");
        }
        let w = &report.witness;
        if w.cosigned_events > 0 || !args.witness_key.is_empty() {
            out!(
                "  witnessed: {} checkpoint_cosigned event(s), {} cosignature(s) by the witness keys given verified{}{}",
                w.cosigned_events,
                w.cosignatures_verified,
                w.witnessed_size
                    .map_or(String::new(), |s| format!(", up to tree size {s}")),
                if w.cosigned_unchecked > 0 {
                    format!(
                        ", {} not checked (their checkpoint is in files not given)",
                        w.cosigned_unchecked
                    )
                } else {
                    String::new()
                }
            );
        }
        if let Some(what) = &witnessed_not_checked {
            out!(
                "  {what} ({} cosignature(s) by the witness keys given verified on checkpoints whose tree head was not checked)",
                w.cosignatures_head_unchecked
            );
        }
        if w.cosigned_too_old > 0 {
            out!(
                "  {} checkpoint_cosigned event(s) not checked: they name a checkpoint older than the latest {} the verifier keeps",
                w.cosigned_too_old,
                sealgate::audit::chain::MAX_NOTES_KEPT
            );
        }
        for a in &w.anchors {
            out!("  witnessed checkpoint: {a}");
        }
        for u in &report.unvouched {
            out!("NOT VOUCHED: {}", u.describe());
        }
        match (&report.last_checkpoint, report.sealed) {
            (_, false) if report.unvouched_lines > 0 => out!(
                "NOT SEALED: {} line(s) before a restart are not vouched for by the audit key (a checkpoint vouches only for its own instance's lines); {} of {} line(s) are vouched, {} after the last checkpoint by the hash chain only",
                report.unvouched_lines,
                report.vouched,
                report.lines,
                report.unsigned_tail
            ),
            (_, true) => out!(
                "sealed: all {} line(s) are vouched for by the audit key, and the last line is a closing or rotation checkpoint",
                report.vouched
            ),
            (Some(at), false) => out!(
                "NOT SEALED: the trail does not end with a v2 closing or rotation checkpoint, so lines may have been cut from its end; {} of {} line(s) are vouched for by the audit key (up to {at}), {} after it by the hash chain only{}",
                report.vouched,
                report.lines,
                report.unsigned_tail,
                if report.v1_checkpoints > 0 {
                    " (v1 checkpoints never seal: they sign neither their reason nor their file's head)"
                } else {
                    ""
                }
            ),
            (None, false) => out!(
                "NOT SEALED: no checkpoint at all; {} line(s) are covered by the hash chain only",
                report.unsigned_tail
            ),
        }
    }
    // `--open-tail` excuses the live tail only: never lines before a
    // restart, nor a trail nothing in which a signature vouches for.
    let open_tail_ok =
        args.open_tail && key.is_some() && report.vouched > 0 && report.unvouched_lines == 0;
    Ok(if report.broken.is_some() {
        ExitCode::from(1)
    } else if report.sealed || open_tail_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The witness keys and the checkpoints held outside the host, checked:
/// any problem is a usage error (they anchor nothing).
fn witnessing(
    args: &VerifyArgs,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> std::result::Result<(Vec<VerifierKey>, Vec<Anchor>), String> {
    let mut witnesses = Vec::new();
    for w in &args.witness_key {
        witnesses.push(load_witness_key(w)?);
    }
    // A key given twice (same name and key ID) counts once.
    let witnesses = distinct(&witnesses);
    if args.checkpoint.is_empty() {
        return Ok((witnesses, Vec::new()));
    }
    let key = key.ok_or("--checkpoint needs --public-key (the audit key signs the checkpoint)")?;
    if args.witness_quorum == 0 || args.witness_quorum > witnesses.len() {
        return Err(format!(
            "--witness-quorum {} needs at least that many --witness-key (given: {}), and at least 1",
            args.witness_quorum,
            witnesses.len()
        ));
    }
    let mut anchors = Vec::new();
    for file in &args.checkpoint {
        let name = file.display().to_string();
        let bytes = read_small(file, MAX_NOTE_BYTES)?;
        let a = Anchor::verify(&name, &bytes, key, &witnesses, args.witness_quorum)
            .map_err(|e| format!("the checkpoint in {name} anchors nothing: {e}"))?;
        anchors.push(a);
    }
    Ok((witnesses, anchors))
}

/// A witness key: vkey text, or a file holding it.
fn load_witness_key(arg: &str) -> std::result::Result<VerifierKey, String> {
    let key = match VerifierKey::parse(arg) {
        Ok(k) => k,
        Err(direct) => {
            let path = std::path::Path::new(arg);
            if !path.is_file() {
                return Err(format!(
                    "--witness-key {arg:?} is neither a vkey ({direct}) nor a file"
                ));
            }
            let bytes = read_small(path, MAX_KEY_TEXT_BYTES + 2)?;
            let text =
                String::from_utf8(bytes).map_err(|_| format!("--witness-key {arg}: not UTF-8"))?;
            VerifierKey::parse(text.trim())
                .map_err(|e| format!("--witness-key {arg}: not a vkey ({e})"))?
        }
    };
    if key.kind() != SignatureType::CosignatureV1 {
        return Err(format!(
            "--witness-key {arg}: {} is not a witness's cosignature/v1 key",
            key.name()
        ));
    }
    Ok(key)
}

/// A file of at most `max` bytes.
fn read_small(path: &std::path::Path, max: usize) -> std::result::Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!("{}: longer than {max} bytes", path.display()));
    }
    Ok(bytes)
}

/// The audit public key from a `.pub` file (`public_key = "<base64>"`).
fn load_public_key(path: &std::path::Path) -> Result<ed25519_dalek::VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let v: toml::Value = toml::from_str(&text)
        .with_context(|| format!("{}: not a public key file", path.display()))?;
    let b64 = v
        .get("public_key")
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no public_key", path.display()))?;
    sealgate::identity::decode_public_key(b64)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
