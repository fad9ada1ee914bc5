//! v3 trails built as the writer builds them (docs/T23: the line of seq N
//! carries the note `Transparency::sign(N, root of lines 0..N-1)`), and
//! each way a v3 checkpoint can be wrong.

use super::test_trail::{build, build_trail, intact, key, verify_files, Build, L, ORIGIN};
use crate::tlog::{leaf_hash, tree_hash, KeyName, MemoryTree, SignatureType, SignerKey};

/// The break of a one-file trail: where and what.
fn broken(lines: &[String]) -> (String, String) {
    let r = verify_files(&[lines]);
    assert!(!r.sealed);
    let b = r.broken.expect("broken");
    (b.at, b.what)
}

const TRAIL: [L; 7] = [
    L::Rec,
    L::Cp("start", 0),
    L::Rec,
    L::Rec,
    L::Cp("count", 0),
    L::Rec,
    L::Cp("close", 0),
];

#[test]
fn a_v3_trail_verifies_sealed_with_every_head_checked() {
    let lines = intact(0, &TRAIL);
    let r = verify_files(&[&lines]);
    assert_eq!(r.broken, None);
    assert!(r.sealed);
    assert_eq!(
        (r.checkpoints, r.v3_checkpoints, r.heads_checked),
        (3, 3, 3)
    );
    assert_eq!(r.origins, [ORIGIN]);
    // The head of every line read, as a tree of the lines computes it.
    let mut m = MemoryTree::new();
    for l in &lines {
        m.push(leaf_hash(l.as_bytes()));
    }
    assert_eq!(r.tree_size, 7);
    let head = tree_hash(&m, 7).expect("head");
    assert_eq!(r.root, Some(head.to_base64()));
    // Cut before the close: verified, not sealed.
    let r = verify_files(&[&lines[..5]]);
    assert_eq!((r.broken, r.sealed, r.heads_checked), (None, false, 2));
    // Rotated into two files: sealed; the tree spans both.
    let lines = intact(
        0,
        &[
            L::Rec,
            L::Cp("start", 0),
            L::Cp("rotate", 0),
            L::Rec,
            L::Cp("start", 3),
            L::Cp("close", 3),
        ],
    );
    let r = verify_files(&[&lines[..3], &lines[3..]]);
    assert_eq!((r.broken, r.sealed, r.heads_checked), (None, true, 4));
    // Nothing may follow a v3 close in its file.
    let (at, what) = broken(&intact(0, &[L::Cp("start", 0), L::Cp("close", 0), L::Rec]));
    assert_eq!(at, "f0:3");
    assert!(
        what.contains("after the close checkpoint at f0:2"),
        "{what}"
    );
}

#[test]
fn files_that_do_not_start_at_seq_0_verify_without_their_heads() {
    let lines = intact(
        10,
        &TRAIL.map(|l| match l {
            L::Cp(r, _) => L::Cp(r, 10),
            l => l,
        }),
    );
    let r = verify_files(&[&lines]);
    assert_eq!(r.broken, None);
    assert!(r.sealed);
    assert_eq!((r.v3_checkpoints, r.heads_checked), (3, 0));
    assert_eq!((r.tree_size, r.root), (0, None));
}

#[test]
fn an_upgraded_trail_checks_v3_heads_over_the_v2_lines_too() {
    let lines = intact(
        0,
        &[
            L::Rec,
            L::Cp2("start", 0),
            L::Rec,
            L::Cp("start", 0),
            L::Rec,
            L::Cp("close", 0),
        ],
    );
    let r = verify_files(&[&lines]);
    assert_eq!(r.broken, None);
    assert!(r.sealed);
    assert_eq!(
        (r.checkpoints, r.v3_checkpoints, r.heads_checked),
        (3, 2, 2)
    );
}

#[test]
fn a_head_that_is_not_the_lines_before_breaks() {
    let lines = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.root = leaf_hash(b"another tree");
        }
    });
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert!(
        what.starts_with("the checkpoint's tree head is not the head of the lines before it: lines seq 0..3 hash to "),
        "{what}"
    );
}

#[test]
fn a_rewrite_re_signed_with_the_audit_key_verifies_on_its_own() {
    // The key holder rewrites a record and re-signs everything after it:
    // the files alone cannot tell (docs/AUDIT.md: witnesses can). Only
    // the head differs from the original's.
    let original = intact(0, &TRAIL);
    let rebuilt = build_trail(
        &Build {
            edit: &|seq, body| {
                if seq == 2 {
                    body.replace("request", "event")
                } else {
                    body
                }
            },
            ..Build::default()
        },
        &TRAIL,
    )
    .lines;
    assert_ne!(rebuilt[2], original[2]);
    let a = verify_files(&[&original]);
    let b = verify_files(&[&rebuilt]);
    assert_eq!((b.broken.clone(), b.sealed), (None, true));
    assert_eq!(b.heads_checked, 3);
    assert_ne!(a.root, b.root);
}

#[test]
fn a_note_signed_by_another_key_breaks() {
    let lines = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.note_signer = SignerKey::from_seed(
                KeyName::new(ORIGIN).expect("name"),
                SignatureType::Ed25519,
                &[9; 32],
            );
        }
    });
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert!(
        what.starts_with("the checkpoint's note is not signed by the audit key (its signature is by sealgate.test/audit+"),
        "{what}"
    );
}

#[test]
fn a_note_for_another_size_breaks() {
    let lines = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.size = 3;
        }
    });
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert_eq!(
        what,
        "the checkpoint's note is for tree size 3, but the checkpoint is seq 4: its note is another checkpoint's"
    );
}

#[test]
fn a_note_signed_under_another_name_than_its_origin_breaks() {
    // The audit key, but the note key name is not the origin.
    let lines = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.note_signer = SignerKey::from_seed(
                KeyName::new("other.example/log").expect("name"),
                SignatureType::Ed25519,
                &key().to_bytes(),
            );
        }
    });
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert_eq!(
        what,
        "the checkpoint's note is signed by the audit key under the name \"other.example/log\", not under its origin \"sealgate.test/audit\""
    );
    // Another origin, consistently signed: a trail holds one log (the
    // gateway writes one origin), so a change is a break.
    let lines = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.origin = "other.example/log".into();
            p.note_signer = SignerKey::from_seed(
                KeyName::new("other.example/log").expect("name"),
                SignatureType::Ed25519,
                &key().to_bytes(),
            );
        }
    });
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert_eq!(
        what,
        format!("this checkpoint is of log \"other.example/log\", but the trail's checkpoints before it are of log \"{ORIGIN}\": a trail holds one log (the gateway writes one origin), so checkpoints of another were put in it")
    );
}

#[test]
fn a_note_whose_origin_the_v3_signature_does_not_cover_breaks() {
    // Note and line from different origins: the v3 signature is over the
    // line's own origin, the verifier rebuilds it from the note's.
    let mut lines = intact(0, &TRAIL);
    let other = build(0, &TRAIL, |seq, p| {
        if seq == 4 {
            p.origin = "other.example/log".into();
            p.note_signer = SignerKey::from_seed(
                KeyName::new("other.example/log").expect("name"),
                SignatureType::Ed25519,
                &key().to_bytes(),
            );
        }
    });
    let note = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        serde_json::Value::from(v["note"].as_str().expect("note")).to_string()
    };
    lines[4] = lines[4].replace(&note(&lines[4]), &note(&other[4]));
    let (at, what) = broken(&lines);
    assert_eq!(at, "f0:5");
    assert_eq!(what, "checkpoint signature does not verify");
}

#[test]
fn a_v3_checkpoint_stripped_of_its_note_breaks() {
    let strip = |i: usize| {
        let mut lines = intact(0, &TRAIL);
        let v: serde_json::Value = serde_json::from_str(&lines[i]).expect("json");
        let note = serde_json::Value::from(v["note"].as_str().expect("note")).to_string();
        lines[i] = lines[i].replace(&format!(",\"note\":{note}"), "");
        assert!(!lines[i].contains("note"));
        broken(&lines)
    };
    // The first one: checked as v2, its signature fails.
    let (at, what) = strip(1);
    assert_eq!(at, "f0:2");
    assert_eq!(what, "checkpoint signature does not verify");
    // A later one: after a v3 checkpoint, a downgrade.
    let (at, what) = strip(4);
    assert_eq!(at, "f0:5");
    assert_eq!(what, "a checkpoint without a Merkle head (v1 or v2) after the v3 checkpoint at f0:2: a downgrade (a gateway with a signing key writes only v3 checkpoints)");
}

#[test]
fn a_v3_checkpoint_line_and_its_note_are_byte_exact() {
    let lines = intact(0, &TRAIL);
    let last = lines[6].clone();
    let v: serde_json::Value = serde_json::from_str(&last).expect("json");
    let note = v["note"].as_str().expect("note").to_string();
    let json = |s: &str| serde_json::Value::from(s).to_string();
    let cosigned = format!("{note}\u{2014} w.example/w AAAAAAAA\n");
    let edits = [
        // The same note, escaped otherwise.
        last.replace("\u{2014}", "\\u2014"),
        // Members moved.
        last.replace(&format!(",\"note\":{}", json(&note)), "")
            .replace(",\"prev\"", &format!(",\"note\":{},\"prev\"", json(&note))),
        // A second signature line in the note.
        last.replace(&json(&note), &json(&cosigned)),
        // The note's signature line with non-canonical base64 padding gone.
        last.replace("=\\n\"", "\\n\""),
    ];
    for altered in edits {
        assert_ne!(altered, last);
        let mut f = lines.clone();
        f[6] = altered.clone();
        let (at, what) = broken(&f);
        assert_eq!(at, "f0:7", "{altered}");
        assert!(
            what.contains("altered") || what.contains("note"),
            "{altered}: {what}"
        );
    }
    let mut f = lines.clone();
    f[6] = last.replace(&json(&note), &json(&cosigned));
    assert_eq!(
        broken(&f).1,
        "the checkpoint's note has 2 signature lines: the gateway writes exactly one, the audit key's"
    );
}
