//! A witness's cosignature made in the test (`sealgate::tlog::cosign`,
//! as a witness does) on one of the gateway's v3 checkpoints: the
//! attacker's cut, dropped, reordered and rewritten trails each break
//! with `--checkpoint`, naming where.

use std::path::{Path, PathBuf};

use serde_json::Value;

use sealgate::tlog::{cosign, Checkpoint, KeyName, SignatureType, SignedNote, SignerKey};

use super::*;

fn witness() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new("witness.test/w").expect("name"),
        SignatureType::CosignatureV1,
        &[42; 32],
    )
}

/// What a witness hands out for the checkpoint line `line`: its note with
/// the witness's cosignature; written to `witnessed.note`, the witness's
/// vkey to `witness.vkey`. Returns the note's file.
fn witnessed(setup: &Setup, line: &str) -> PathBuf {
    let mut note =
        SignedNote::parse(json(line)["note"].as_str().expect("note").as_bytes()).expect("note");
    let cp = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    note.push(cosign(&cp, &witness(), 1_700_000_000).expect("cosign"))
        .expect("push");
    let path = setup.path("witnessed.note");
    std::fs::write(&path, note.to_bytes()).expect("write");
    std::fs::write(
        setup.path("witness.vkey"),
        format!("{}\n", witness().verifier()),
    )
    .expect("write");
    path
}

/// The flags that hold the trail to the witnessed checkpoint.
fn anchored(setup: &Setup, note: &Path) -> Vec<String> {
    vec![
        "--witness-key".into(),
        setup.path("witness.vkey").display().to_string(),
        "--checkpoint".into(),
        note.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_trail_verifies_and_names_the_checkpoint_it_matched() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sealed"], true);
    assert_eq!(r["heads_checked"], r["v3_checkpoints"]);
    assert_eq!(r["tree_size"], lines.len());
    assert_eq!(
        r["witness"]["checkpoints_matched"][0]
            .as_str()
            .expect("matched"),
        format!(
            "{}:{n}: lines seq 0..{} match the checkpoint in {} (tree size {n}, cosigned by {}+{})",
            file.display(),
            n - 1,
            note.display(),
            witness().verifier().name(),
            witness().verifier().id()
        )
    );
    // The vkey as text works as well as its file.
    let vkey = witness().verifier().to_string();
    let note_arg = note.display().to_string();
    let (code, _) = verify(
        &setup,
        &file,
        &["--witness-key", &vkey, "--checkpoint", &note_arg],
    );
    assert_eq!(code, 0);
    // A quorum the keys given cannot meet, or a note not cosigned by the
    // key given: a usage error (exit 2), nothing verified.
    let (code, r) = verify(
        &setup,
        &file,
        &[
            "--witness-key",
            &vkey,
            "--checkpoint",
            &note_arg,
            "--witness-quorum",
            "2",
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(
        r["usage_error"],
        "--witness-quorum 2 needs at least that many --witness-key (given: 1), and at least 1"
    );
    let other = SignerKey::from_seed(
        KeyName::new("other.test/w").expect("name"),
        SignatureType::CosignatureV1,
        &[43; 32],
    )
    .verifier()
    .to_string();
    let (code, r) = verify(
        &setup,
        &file,
        &["--witness-key", &other, "--checkpoint", &note_arg],
    );
    assert_eq!(code, 2);
    assert_eq!(
        r["usage_error"],
        format!(
            "the checkpoint in {note_arg} anchors nothing: 0 of the witness keys given cosigned it, fewer than the quorum 1"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_after_a_witnessed_checkpoint_is_reported_where_it_ends() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    // Cut back before the witnessed size, then sealed again with a
    // re-signed close: on its own a sealed trail.
    let mut cut = lines[..n - 2].to_vec();
    cut.push(lines.last().expect("close").clone());
    let cut = resign(&audit_key(&setup), &cut);
    write_lines(&file, &cut);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!((code, &r["sealed"]), (0, &Value::Bool(true)), "{r}");
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["broken_at"], format!("{}:{}", file.display(), n - 1));
    let what = r["broken"].as_str().expect("broken");
    assert!(
        what.starts_with(&format!(
            "truncated after a witnessed checkpoint of size {n}: the trail ends at seq {} (tree size {}), but the checkpoint in {}",
            n - 2,
            n - 1,
            note.display()
        )),
        "{what}"
    );
    assert_eq!(r["sealed"], false);
}

/// Each rewrite of the lines before the witnessed size, re-signed: exit 0
/// on its own, and with the witnessed checkpoint exit 1 at the line of
/// seq N-1, "rewritten or forked before size N".
async fn rewritten_is_caught(rewrite: impl Fn(&mut Vec<String>, usize)) {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let note = witnessed(&setup, &lines[n]);
    let mut edited = lines.clone();
    rewrite(&mut edited, n);
    let forged = resign(&audit_key(&setup), &edited);
    assert_ne!(forged[..n], lines[..n]);
    write_lines(&file, &forged);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!((code, &r["sealed"]), (0, &Value::Bool(true)), "{r}");
    let (code, r) = verify(&setup, &file, &strs(&anchored(&setup, &note)));
    assert_eq!(code, 1, "{r}");
    // The tree reaches size N at the line of seq N-1 (line N of the file),
    // or the trail is now shorter than N.
    let what = r["broken"].as_str().expect("broken");
    if forged.len() >= n {
        assert_eq!(r["broken_at"], format!("{}:{n}", file.display()));
        assert!(
            what.starts_with(&format!(
                "rewritten or forked before size {n}: lines seq 0..{} hash to ",
                n - 1
            )),
            "{what}"
        );
        assert!(
            what.contains(&format!(
                ", but the checkpoint in {} (tree size {n}, cosigned by witness.test/w+",
                note.display()
            )),
            "{what}"
        );
    } else {
        assert!(
            what.starts_with("truncated after a witnessed checkpoint"),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_dropped_and_re_signed_is_caught() {
    rewritten_is_caught(|lines, n| {
        let r = requests_before(lines, n);
        lines.remove(r[1]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_records_reordered_and_re_signed_are_caught() {
    rewritten_is_caught(|lines, n| {
        let r = requests_before(lines, n);
        lines.swap(r[1], r[2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suffix_rewritten_and_re_signed_is_caught() {
    // From a record before the witnessed size to the end: every record
    // names another tool.
    rewritten_is_caught(|lines, n| {
        let from = *requests_before(lines, n).last().expect("a record");
        for l in lines[from..].iter_mut() {
            if json(l)["type"] == "request" {
                *l = l.replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"");
            }
        }
    })
    .await;
}
