//! Regression tests for the hostile review of the verifier
//! (/work/notes/review-wire.md R5, R6, R8, R9, R10 and its smaller notes):
//! each failed before its fix.

use super::super::chain::{
    checkpoint_line, key_id, sign_checkpoint_v2, Anchor, CheckpointV2, Report, Verifier, GENESIS,
};
use super::super::verify_v3::test_trail::{
    build_trail, cosigned_note, intact, key, verify_with, witness, witness_key, Build, Trail,
    COSIGNED_AT, L, ORIGIN,
};
use crate::tlog::{cosign, Checkpoint, KeyName, SignatureType, SignedNote, SignerKey};

const OTHER: &str = "other.test/audit";

/// seq 0..12: checkpoints at 1, 4, 8, 11 (close); the witnesses cosigned
/// sizes 4 (event at seq 5) and 8 (event at seq 9).
const TRAIL: [L; 12] = [
    L::Rec,
    L::Cp("start", 0),
    L::Rec,
    L::Rec,
    L::Cp("count", 0),
    L::Cosigned(4),
    L::Rec,
    L::Rec,
    L::Cp("count", 0),
    L::Cosigned(8),
    L::Rec,
    L::Cp("close", 0),
];

fn original() -> Trail {
    build_trail(&Build::default(), &TRAIL)
}

/// The audit key as the note signer of the log `OTHER`.
fn other_signer() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new(OTHER).expect("name"),
        SignatureType::Ed25519,
        &key().to_bytes(),
    )
}

/// Verifies `lines` (one file) with `v` built from the audit key.
fn run(lines: &[String], build: impl FnOnce(Verifier<'_>) -> Verifier<'_>) -> Report {
    let vk = key().verifying_key();
    let mut v = build(Verifier::new(Some(&vk)));
    v.start_file("f0");
    for (i, l) in lines.iter().enumerate() {
        v.line(&format!("f0:{}", i + 1), l.as_bytes());
    }
    v.finish()
}

/// R5: the files start after seq 0, the lines before checkpoint 7 were
/// rewritten by the key holder and checkpoint 7 re-signed with the note the
/// witnesses saw: its cosignatures verify, but they count as witnessed
/// only, never as verified, and set no witnessed size.
#[test]
fn a_cosignature_on_a_head_not_checked_against_the_lines_is_not_counted_as_verified() {
    let items = [
        L::Rec,
        L::Cp("start", 0),
        L::Rec,
        L::Cp("rotate", 0),
        L::Cp("start", 4),
        L::Rec,
        L::Rec,
        L::Cp("count", 4),
        L::Cosigned(7),
        L::Cp("close", 4),
    ];
    let before = build_trail(&Build::default(), &items);
    let r7 = crate::tlog::Hash(*before.heads[&7].root_hash());
    let tamper = move |seq: u64, p: &mut super::super::verify_v3::test_trail::Parts| {
        if seq == 7 {
            p.root = r7;
        }
    };
    let edit = |seq: u64, b: String| {
        if seq == 5 {
            b.replace("\"n\":5", "\"n\":555")
        } else {
            b
        }
    };
    let after = build_trail(
        &Build {
            tamper: &tamper,
            edit: &edit,
            witnessed: Some(&before.heads),
            ..Build::default()
        },
        &items,
    );
    let keys = vec![witness_key(1), witness_key(2)];
    let full = verify_with(
        &[&after.lines[..4], &after.lines[4..]],
        keys.clone(),
        Vec::new(),
    );
    assert!(full.broken.is_some());
    let part = verify_with(&[&after.lines[4..]], keys.clone(), Vec::new());
    assert_eq!(part.broken, None);
    assert_eq!(part.heads_checked, 0);
    assert_eq!(part.witness.cosignatures_verified, 0);
    assert_eq!(part.witness.cosignatures_head_unchecked, 2);
    assert_eq!(part.witness.witnessed_size, None);
    // The honest second file alone: the same (witnessed, not checked).
    let honest = verify_with(&[&before.lines[4..]], keys, Vec::new());
    assert_eq!(honest.broken, None);
    assert_eq!(honest.witness.cosignatures_verified, 0);
    assert_eq!(honest.witness.cosignatures_head_unchecked, 2);
    assert_eq!(honest.witness.witnessed_size, None);
}

/// R6: one witness key given twice counts once toward the quorum, and its
/// cosignatures in events once.
#[test]
fn a_repeated_witness_key_counts_once() {
    let t = original();
    let cp = &t.heads[&4];
    let e = Anchor::verify(
        "one-witness.note",
        &cosigned_note(cp, &[1]),
        &key().verifying_key(),
        &[witness_key(1), witness_key(1)],
        2,
    )
    .expect_err("one witness is not a quorum of 2");
    assert_eq!(
        e,
        "1 of the witness keys given cosigned it, fewer than the quorum 2"
    );
    let a = Anchor::verify(
        "one-witness.note",
        &cosigned_note(cp, &[1]),
        &key().verifying_key(),
        &[witness_key(1), witness_key(1)],
        1,
    )
    .expect("quorum 1");
    assert_eq!(a.witnesses.len(), 1);
    let once = verify_with(&[&t.lines], vec![witness_key(1)], Vec::new());
    let twice = verify_with(
        &[&t.lines],
        vec![witness_key(1), witness_key(1)],
        Vec::new(),
    );
    assert_eq!(once.witness.cosignatures_verified, 2);
    assert_eq!(twice.witness, once.witness);
}

/// R9: a trail whose checkpoints change origin is a break.
#[test]
fn a_trail_whose_checkpoints_change_origin_breaks() {
    let tamper = |seq: u64, p: &mut super::super::verify_v3::test_trail::Parts| {
        if seq >= 8 {
            p.origin = OTHER.into();
            p.note_signer = other_signer();
        }
    };
    let lines = build_trail(
        &Build {
            tamper: &tamper,
            ..Build::default()
        },
        &TRAIL,
    )
    .lines;
    let r = verify_with(&[&lines], Vec::new(), Vec::new());
    let b = r.broken.expect("another origin");
    assert_eq!(b.at, "f0:9");
    assert_eq!(
        b.what,
        "this checkpoint is of log \"other.test/audit\", but the trail's checkpoints before it are of log \"sealgate.test/audit\": a trail holds one log (the gateway writes one origin), so checkpoints of another were put in it"
    );
}

/// R9: `--origin` pins the log.
#[test]
fn origin_pins_the_log() {
    let t = original();
    let r = run(&t.lines, |v| v.with_origin(OTHER));
    let b = r.broken.expect("pinned to another log");
    assert_eq!(b.at, "f0:2");
    assert_eq!(
        b.what,
        "this checkpoint is of log \"sealgate.test/audit\", not of the log \"other.test/audit\" --origin requires"
    );
    let r = run(&t.lines, |v| v.with_origin(ORIGIN));
    assert_eq!(r.broken, None);
    assert!(r.sealed);
    // A trail with no v3 checkpoint names no origin.
    let v2 = intact(0, &[L::Rec, L::Cp2("close", 0)]);
    let b = run(&v2, |v| v.with_origin(ORIGIN))
        .broken
        .expect("no origin");
    assert_eq!(
        b.what,
        "--origin \"sealgate.test/audit\": no v3 checkpoint in the files names an origin"
    );
}

/// R9: an anchor of another log is named as such (exit 1), whether its
/// root differs or not.
#[test]
fn an_anchor_of_another_log_breaks_as_such() {
    let t = original();
    let cp = Checkpoint::new(OTHER, 4, *t.heads[&4].root_hash()).expect("checkpoint");
    let mut note =
        SignedNote::sign(cp.to_note_text().expect("text"), &other_signer()).expect("note");
    note.push(cosign(&cp, &witness(1), COSIGNED_AT).expect("cosign"))
        .expect("push");
    let a = Anchor::verify(
        "other.note",
        &note.to_bytes(),
        &key().verifying_key(),
        &[witness_key(1)],
        1,
    )
    .expect("a valid anchor of another log");
    let r = verify_with(&[&t.lines], vec![witness_key(1)], vec![a.clone()]);
    let b = r.broken.expect("another log");
    assert_eq!(b.at, "f0:2");
    assert!(
        b.what.starts_with(
            "the checkpoint is of log \"other.test/audit\", the trail of log \"sealgate.test/audit\""
        ),
        "{b:?}"
    );
    // With --origin naming the anchor's log, the trail's first checkpoint breaks.
    let r = run(&t.lines, |v| {
        v.with_origin(OTHER)
            .with_witnesses(vec![witness_key(1)], vec![a])
    });
    assert!(r.broken.expect("pinned").what.contains("--origin requires"));
}

/// R10: what is at the very end of the last file, and not a record, is a
/// torn write only if it is a prefix, without its newline, of the line the
/// writer framed next.
#[test]
fn only_a_plausible_torn_write_at_the_end_is_not_a_break() {
    let t = original();
    let lines = t.lines[..9].to_vec(); // ends with checkpoint 8
    let with = |last: &str, newline: bool| {
        let vk = key().verifying_key();
        let mut v = Verifier::new(Some(&vk));
        v.start_file("f0");
        let mut all = lines.clone();
        all.push(last.to_string());
        for (i, l) in all.iter().enumerate() {
            v.line(&format!("f0:{}", i + 1), l.as_bytes());
            if newline || i + 1 < all.len() {
                v.newline();
            }
        }
        v.finish()
    };
    for torn in [
        "",
        "{\"se",
        "{\"seq\":",
        "{\"seq\":9",
        "{\"seq\":9,\"type\":\"req",
    ] {
        let r = with(torn, false);
        assert_eq!(r.broken, None, "{torn:?}");
        assert_eq!(r.torn, 1);
    }
    for junk in [
        "junk",
        "{\"seq\":10,\"ty",
        "{\"seq\":90",
        "{\"seq\":x",
        "[1]",
        "{ \"seq\":9,",
    ] {
        let b = with(junk, false).broken.expect(junk);
        assert_eq!(b.at, "f0:10");
        assert_eq!(
            b.what,
            "the last line is not a record, nor the start of the line the gateway writes next (`{\"seq\":N,...`): not a torn write (a line appended)"
        );
    }
    let b = with("{\"seq\":9,\"type\":\"req", true)
        .broken
        .expect("with a newline");
    assert_eq!(
        b.what,
        "the last line is not a record, and it ends with a newline: a crash mid-write leaves no newline (a line appended)"
    );
}

/// R8: the verifier keeps the latest notes only; an event naming an
/// older checkpoint is counted as not checked.
#[test]
fn an_event_naming_a_checkpoint_whose_note_was_not_kept_is_not_checked() {
    let items = [
        L::Rec,
        L::Cp("start", 0),
        L::Rec,
        L::Cp("count", 0),
        L::Cosigned(1),
        L::Cp("close", 0),
    ];
    let t = build_trail(&Build::default(), &items);
    let r = run(&t.lines, |v| {
        v.with_witnesses(vec![witness_key(1)], Vec::new())
            .keep_notes(1)
    });
    assert_eq!(r.broken, None);
    assert_eq!(r.witness.cosigned_too_old, 1);
    assert_eq!(r.witness.cosignatures_verified, 0);
    let r = run(&t.lines, |v| {
        v.with_witnesses(vec![witness_key(1)], Vec::new())
            .keep_notes(2)
    });
    assert_eq!(r.witness.cosigned_too_old, 0);
    assert_eq!(r.witness.cosignatures_verified, 1);
}

/// A checkpoint's instance past 255 bytes would be partly unsigned.
#[test]
fn a_checkpoint_instance_longer_than_255_bytes_breaks() {
    let k = key();
    let instance = "i".repeat(300);
    let c = CheckpointV2 {
        seq: 0,
        ts_ms: 5,
        instance: &instance,
        prev: &GENESIS,
        file_first_seq: 0,
        reason: "close",
    };
    let line = checkpoint_line(
        &c,
        0,
        &key_id(&k.verifying_key()),
        &sign_checkpoint_v2(&k, &c),
    );
    let b = run(&[line], |v| v).broken.expect("too long");
    assert_eq!(
        b.what,
        "checkpoint instance longer than 255 bytes: its bytes past 255 are not signed (the gateway writes 16 hex digits)"
    );
}

/// A v2 checkpoint after a v3 one: a downgrade the writer never makes.
#[test]
fn a_v2_checkpoint_after_a_v3_one_breaks() {
    let lines = intact(0, &[L::Rec, L::Cp("start", 0), L::Rec, L::Cp2("close", 0)]);
    let b = verify_with(&[&lines], Vec::new(), Vec::new())
        .broken
        .expect("downgrade");
    assert_eq!(b.at, "f0:4");
    assert_eq!(
        b.what,
        "a checkpoint without a Merkle head (v1 or v2) after the v3 checkpoint at f0:2: a downgrade (a gateway with a signing key writes only v3 checkpoints)"
    );
}

/// R6, second half: one public key under two names is one witness (a
/// cosignature/v1 does not sign the key name): it counts once.
#[test]
fn one_public_key_under_two_names_counts_once() {
    let renamed = SignerKey::from_seed(
        KeyName::new("alias.test/w").expect("name"),
        SignatureType::CosignatureV1,
        &[101; 32],
    )
    .verifier()
    .clone();
    assert_eq!(renamed.public_key(), witness_key(1).public_key());
    assert_ne!(renamed.name(), witness_key(1).name());
    let kept = super::distinct(&[witness_key(1), renamed, witness_key(2)]);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0], witness_key(1));
    assert_eq!(kept[1], witness_key(2));
}
