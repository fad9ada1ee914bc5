//! Witnessed trails and the attacks only witnesses catch: the audit key's
//! holder rewrites, drops, reorders or cuts lines and re-signs every
//! checkpoint; the cosignatures the witnesses made before cannot follow.

use super::super::chain::{Anchor, Report};
use super::super::verify_v3::test_trail::{
    build_trail, cosigned_note, key, verify_with, witness_key, Build, Trail, L, ORIGIN,
};
use crate::tlog::{Checkpoint, VerifierKey};

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

fn witnesses() -> Vec<VerifierKey> {
    vec![witness_key(1), witness_key(2)]
}

/// The checkpoint of `size` of `t`, cosigned by witness 1, as an anchor.
fn anchor(t: &Trail, size: u64) -> Anchor {
    let cp = &t.heads[&size];
    Anchor::verify(
        "witnessed.note",
        &cosigned_note(cp, &[1]),
        &key().verifying_key(),
        &witnesses(),
        1,
    )
    .expect("anchor")
}

/// The key holder's rewrite of `items`: record bodies `edit`ed, every
/// checkpoint re-signed, the cosignature events kept as they were.
fn rewritten(items: &[L], edit: &dyn Fn(u64, String) -> String) -> Vec<String> {
    let before = original();
    build_trail(
        &Build {
            edit,
            witnessed: Some(&before.heads),
            ..Build::default()
        },
        items,
    )
    .lines
}

/// Two files: seq 0..4 (rotated) and 5..8; the event of seq 5 cosigns
/// size 3 (in the first file), that of seq 7 size 6.
fn rotated() -> Vec<String> {
    let items = [
        L::Rec,
        L::Cp("start", 0),
        L::Rec,
        L::Cp("count", 0),
        L::Cp("rotate", 0),
        L::Cosigned(3),
        L::Cp("start", 5),
        L::Cosigned(6),
        L::Cp("close", 5),
    ];
    build_trail(&Build::default(), &items).lines
}

fn one(lines: &[String], w: Vec<VerifierKey>, a: Vec<Anchor>) -> Report {
    verify_with(&[lines], w, a)
}

fn broken(r: Report) -> (String, String) {
    assert!(!r.sealed);
    let b = r.broken.expect("broken");
    (b.at, b.what)
}

#[test]
fn a_witnessed_trail_verifies_its_cosignatures_and_anchors() {
    let t = original();
    let r = one(&t.lines, witnesses(), vec![anchor(&t, 8), anchor(&t, 4)]);
    assert_eq!(r.broken, None);
    assert!(r.sealed);
    let w = &r.witness;
    assert_eq!(
        (w.cosigned_events, w.cosignatures_verified, w.witnessed_size),
        (2, 4, Some(8))
    );
    assert_eq!(
        w.anchors,
        [
            "f0:4: lines seq 0..3 match the checkpoint in witnessed.note (tree size 4, cosigned by witness1.test/w+".to_string()
                + &witness_key(1).id().to_string()
                + ")",
            "f0:8: lines seq 0..7 match the checkpoint in witnessed.note (tree size 8, cosigned by witness1.test/w+".to_string()
                + &witness_key(1).id().to_string()
                + ")",
        ]
    );
    // Without witness keys the events are counted, not checked.
    let r = one(&t.lines, Vec::new(), Vec::new());
    assert_eq!(r.broken, None);
    assert_eq!(
        (r.witness.cosigned_events, r.witness.cosignatures_verified),
        (2, 0)
    );
    // The second file only: the first event's checkpoint was not read;
    // the second's was, but its head could not be checked against the
    // lines (those before seq 5 are missing): witnessed, not verified.
    let r = verify_with(&[&rotated()[5..]], witnesses(), Vec::new());
    assert_eq!((r.broken, r.sealed), (None, true));
    assert_eq!(
        (
            r.witness.cosigned_unchecked,
            r.witness.cosignatures_verified,
            r.witness.cosignatures_head_unchecked,
            r.witness.witnessed_size,
        ),
        (1, 0, 2, None)
    );
}

#[test]
fn a_suffix_rewritten_and_re_signed_breaks_at_the_witnessed_cosignature() {
    // Record 6 edited; checkpoint 8 re-signed with the new head; the
    // event of seq 9 still holds the witnesses' cosignatures on the old.
    let lines = rewritten(&TRAIL, &|seq, b| {
        if seq == 6 {
            b.replace("\"n\":6", "\"n\":66")
        } else {
            b
        }
    });
    assert_eq!(
        one(&lines, Vec::new(), Vec::new()).broken,
        None,
        "on its own it verifies"
    );
    let (at, what) = broken(one(&lines, witnesses(), Vec::new()));
    assert_eq!(at, "f0:10");
    assert!(
        what.starts_with("rewritten after witnessing: the cosignature by witness1.test/w+"),
        "{what}"
    );
    assert!(
        what.contains("on tree size 8 does not verify against the checkpoint at f0:9"),
        "{what}"
    );
    // With the cosigned checkpoint of size 8 held outside: caught where
    // the tree reaches size 8, even with the events dropped.
    let no_events: Vec<L> = TRAIL
        .into_iter()
        .filter(|l| !matches!(l, L::Cosigned(_)))
        .collect();
    let lines = rewritten(&no_events, &|seq, b| {
        if seq == 5 {
            b.replace("\"n\":5", "\"n\":55")
        } else {
            b
        }
    });
    assert_eq!(one(&lines, witnesses(), Vec::new()).broken, None);
    let t = original();
    let (at, what) = broken(one(&lines, witnesses(), vec![anchor(&t, 8)]));
    assert_eq!(at, "f0:8");
    assert!(
        what.starts_with("rewritten or forked before size 8: lines seq 0..7 hash to "),
        "{what}"
    );
    assert!(
        what.contains(
            "but the checkpoint in witnessed.note (tree size 8, cosigned by witness1.test/w+"
        ),
        "{what}"
    );
}

#[test]
fn a_record_dropped_or_two_reordered_and_re_signed_break() {
    let t = original();
    // Record 2 dropped: the records after it move up (n 3 at seq 2, ...).
    let dropped = rewritten(&TRAIL, &|seq, b| {
        if (2..=3).contains(&seq) {
            b.replace(&format!("\"n\":{seq}"), &format!("\"n\":{}", seq + 1))
        } else {
            b
        }
    });
    let (at, what) = broken(one(&dropped, witnesses(), Vec::new()));
    assert_eq!(at, "f0:6");
    assert!(
        what.contains("on tree size 4 does not verify against the checkpoint at f0:5"),
        "{what}"
    );
    let (at, what) = broken(one(&dropped, Vec::new(), vec![anchor(&t, 4)]));
    assert_eq!(at, "f0:4");
    assert!(
        what.starts_with("rewritten or forked before size 4: lines seq 0..3"),
        "{what}"
    );
    // Records 2 and 3 swapped.
    let reordered = rewritten(&TRAIL, &|seq, b| match seq {
        2 => b.replace("\"n\":2", "\"n\":3"),
        3 => b.replace("\"n\":3", "\"n\":2"),
        _ => b,
    });
    let (at, what) = broken(one(&reordered, witnesses(), Vec::new()));
    assert_eq!(at, "f0:6");
    assert!(what.starts_with("rewritten after witnessing"), "{what}");
    let (at, what) = broken(one(&reordered, Vec::new(), vec![anchor(&t, 8)]));
    assert_eq!(at, "f0:8");
    assert!(
        what.starts_with("rewritten or forked before size 8"),
        "{what}"
    );
}

#[test]
fn a_trail_cut_after_a_witnessed_checkpoint_breaks() {
    let t = original();
    // Cut back to seq 6: sealed nothing, and size 8 was witnessed.
    let cut = &t.lines[..7];
    assert_eq!(one(cut, witnesses(), Vec::new()).broken, None);
    let (at, what) = broken(one(cut, witnesses(), vec![anchor(&t, 8)]));
    assert_eq!(at, "f0:7");
    assert!(
        what.starts_with("truncated after a witnessed checkpoint of size 8: the trail ends at seq 6 (tree size 7), but the checkpoint in witnessed.note (tree size 8, cosigned by witness1.test/w+"),
        "{what}"
    );
    assert!(what.ends_with(") covers lines seq 0..7"), "{what}");
    // Cut and closed again by the key holder: still short of size 8.
    let items = [L::Rec, L::Cp("start", 0), L::Rec, L::Rec, L::Cp("close", 0)];
    let closed = build_trail(&Build::default(), &items).lines;
    assert!(one(&closed, Vec::new(), Vec::new()).sealed);
    let (at, what) = broken(one(&closed, Vec::new(), vec![anchor(&t, 8)]));
    assert_eq!(at, "f0:5");
    assert!(what.starts_with("truncated after a witnessed checkpoint of size 8: the trail ends at seq 4 (tree size 5)"), "{what}");
    // Files that do not start at seq 0 cannot be held to an anchor.
    let (at, what) = broken(verify_with(
        &[&rotated()[5..]],
        Vec::new(),
        vec![anchor(&t, 8)],
    ));
    assert_eq!(at, "f0");
    assert!(
        what.ends_with(
            "cannot be checked: the files before seq 5 are missing (give every file from seq 0)"
        ),
        "{what}"
    );
}

#[test]
fn a_checkpoint_that_does_not_verify_anchors_nothing() {
    let t = original();
    let cp = &t.heads[&8];
    let audit = key().verifying_key();
    let ok = cosigned_note(cp, &[1, 2]);
    assert!(Anchor::verify("n", &ok, &audit, &witnesses(), 2).is_ok());
    // Quorum not met.
    let err =
        Anchor::verify("n", &cosigned_note(cp, &[1]), &audit, &witnesses(), 2).expect_err("quorum");
    assert_eq!(
        err,
        "1 of the witness keys given cosigned it, fewer than the quorum 2"
    );
    // A cosignature that does not verify (another size, same line).
    let other = Checkpoint::new(ORIGIN, 4, *t.heads[&4].root_hash()).expect("cp");
    let theirs = String::from_utf8(cosigned_note(&other, &[1])).expect("utf-8");
    let forged = String::from_utf8(ok.clone()).expect("utf-8");
    let w1 = theirs.lines().last().expect("line");
    let mine = forged
        .lines()
        .find(|l| l.contains("witness1"))
        .expect("line");
    let err = Anchor::verify(
        "n",
        forged.replace(mine, w1).as_bytes(),
        &audit,
        &witnesses(),
        1,
    )
    .expect_err("bad cosignature");
    assert!(
        err.starts_with(
            "a witness's cosignature does not verify (invalid cosignature by witness1.test/w+"
        ),
        "{err}"
    );
    // Not the audit key's.
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
    let err = Anchor::verify("n", &ok, &other_key, &witnesses(), 1).expect_err("other key");
    assert!(
        err.starts_with("not signed by the audit key under its origin \"sealgate.test/audit\""),
        "{err}"
    );
    let err = Anchor::verify("n", b"garbage", &audit, &witnesses(), 1).expect_err("garbage");
    assert!(err.starts_with("not a signed note"), "{err}");
}

#[test]
fn a_cosigned_event_that_names_no_checkpoint_breaks() {
    let t = original();
    let mut lines = t.lines.clone();
    // The event of seq 5 made to name size 3 (a record), re-chained.
    lines[5] = lines[5].replace("\"tree_size\":4", "\"tree_size\":3");
    let rechained = super::super::verify_v3::test_trail::rechain(&lines[..6]);
    let (at, what) = broken(one(&rechained, witnesses(), Vec::new()));
    assert_eq!(at, "f0:6");
    assert_eq!(
        what,
        "checkpoint_cosigned event names tree size 3, but the line seq 3 is not a v3 checkpoint"
    );
    lines[5] = t.lines[5].replace("\"tree_size\":4", "\"tree_size\":5");
    let rechained = super::super::verify_v3::test_trail::rechain(&lines[..6]);
    let (_, what) = broken(one(&rechained, witnesses(), Vec::new()));
    assert_eq!(
        what,
        "checkpoint_cosigned event names tree size 5, which is not before it (seq 5)"
    );
}

#[test]
fn another_logs_checkpoint_is_named_as_such() {
    use crate::tlog::{cosign, KeyName, SignatureType, SignedNote, SignerKey};
    let t = original();
    let origin = "other.example/log";
    let cp = Checkpoint::new(origin, 8, [9; 32]).expect("cp");
    let signer = SignerKey::from_seed(
        KeyName::new(origin).expect("name"),
        SignatureType::Ed25519,
        &key().to_bytes(),
    );
    let mut note = SignedNote::sign(cp.to_note_text().expect("text"), &signer).expect("note");
    note.push(
        cosign(
            &cp,
            &super::super::verify_v3::test_trail::witness(1),
            1_700_000_000,
        )
        .expect("cosign"),
    )
    .expect("push");
    let a = Anchor::verify(
        "other.note",
        &note.to_bytes(),
        &key().verifying_key(),
        &witnesses(),
        1,
    )
    .expect("a valid checkpoint, of another log");
    // Named as soon as the trail's origin is known (its first v3
    // checkpoint).
    let (at, what) = broken(one(&t.lines, witnesses(), vec![a]));
    assert_eq!(at, "f0:2");
    assert!(
        what.starts_with(&format!(
            "the checkpoint is of log \"other.example/log\", the trail of log \"{ORIGIN}\""
        )),
        "{what}"
    );
}

#[test]
fn cosignatures_that_are_not_signature_lines_break() {
    let t = original();
    let from = "\"cosignatures\":[\"";
    for (to, expected) in [
        (
            "\"cosignatures\":[\"x\\n\\n",
            "checkpoint_cosigned event: a cosignature holds a newline",
        ),
        (
            "\"cosignatures\":[\"not a line\",\"",
            "checkpoint_cosigned event: its cosignatures are not signature lines",
        ),
    ] {
        let mut lines = t.lines.clone();
        lines[5] = lines[5].replacen(from, to, 1);
        assert_ne!(lines[5], t.lines[5]);
        let rechained = super::super::verify_v3::test_trail::rechain(&lines[..6]);
        let (at, what) = broken(one(&rechained, witnesses(), Vec::new()));
        assert_eq!(at, "f0:6");
        assert_eq!(what, expected);
    }
}
