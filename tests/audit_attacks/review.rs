//! The hostile review's findings on `audit verify`
//! (/work/notes/review-wire.md R6, R9, R10) against a real gateway's
//! trail, through the command line.

use sealgate::tlog::cosign;

use super::*;

fn witness() -> SignerKey {
    SignerKey::from_seed(
        KeyName::new("witness.test/r").expect("name"),
        SignatureType::CosignatureV1,
        &[44; 32],
    )
}

/// The checkpoint `line`'s tree (size, root) under `origin`, signed by the
/// audit key under that origin and cosigned by [`witness`]: written to
/// `name`, the witness's vkey to `review.vkey`.
fn anchor_as(setup: &Setup, line: &str, origin: &str, name: &str) -> PathBuf {
    let note =
        SignedNote::parse(json(line)["note"].as_str().expect("note").as_bytes()).expect("note");
    let theirs = Checkpoint::parse(note.text().as_str()).expect("checkpoint");
    let cp = Checkpoint::new(origin, theirs.size(), *theirs.root_hash()).expect("checkpoint");
    let signer = SignerKey::from_seed(
        KeyName::new(origin).expect("name"),
        SignatureType::Ed25519,
        &audit_key(setup).to_bytes(),
    );
    let mut note = SignedNote::sign(cp.to_note_text().expect("text"), &signer).expect("sign");
    note.push(cosign(&cp, &witness(), 1_700_000_000).expect("cosign"))
        .expect("push");
    let path = setup.path(name);
    std::fs::write(&path, note.to_bytes()).expect("write");
    std::fs::write(
        setup.path("review.vkey"),
        format!("{}\n", witness().verifier()),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_pinned_and_a_repeated_witness_key_counts_once() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    let (code, r) = verify(&setup, &file, &[]);
    assert_eq!(code, 0, "{r}");
    let origin = r["origins"][0].as_str().expect("origin").to_string();
    assert_eq!(r["origins"].as_array().expect("origins").len(), 1);
    // --origin: the trail's passes, another breaks at the first checkpoint.
    let (code, r) = verify(&setup, &file, &["--origin", &origin]);
    assert_eq!(code, 0, "{r}");
    let (code, r) = verify(&setup, &file, &["--origin", "other.example/log"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        r["broken"],
        format!("this checkpoint is of log {origin:?}, not of the log \"other.example/log\" --origin requires")
    );
    // The same tree, signed by the audit key as another log, cosigned: it
    // anchors another log (exit 1, named as such).
    let other = anchor_as(&setup, &lines[n], "other.example/log", "other.note");
    let vkey = setup.path("review.vkey").display().to_string();
    let other_arg = other.display().to_string();
    let (code, r) = verify(
        &setup,
        &file,
        &["--witness-key", &vkey, "--checkpoint", &other_arg],
    );
    assert_eq!(code, 1, "{r}");
    assert!(
        r["broken"].as_str().expect("broken").starts_with(&format!(
            "the checkpoint is of log \"other.example/log\", the trail of log {origin:?}"
        )),
        "{r}"
    );
    // Its own log's: matched.
    let own = anchor_as(&setup, &lines[n], &origin, "own.note");
    let own_arg = own.display().to_string();
    let (code, r) = verify(
        &setup,
        &file,
        &["--witness-key", &vkey, "--checkpoint", &own_arg],
    );
    assert_eq!(code, 0, "{r}");
    // One witness key given twice is one key: a quorum of 2 is not met.
    let (code, r) = verify(
        &setup,
        &file,
        &[
            "--witness-key",
            &vkey,
            "--witness-key",
            &vkey,
            "--checkpoint",
            &own_arg,
            "--witness-quorum",
            "2",
        ],
    );
    assert_eq!(code, 2, "{r}");
    assert_eq!(
        r["usage_error"],
        "--witness-quorum 2 needs at least that many --witness-key (given: 1), and at least 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_plausible_torn_write_at_the_end_passes_open_tail() {
    let (setup, file) = trail().await;
    let lines = raw_lines(&file);
    let n = pick(&lines);
    // A live file: it ends with the checkpoint of seq n.
    let live = |tail: &str| {
        std::fs::write(&file, lines[..=n].join("\n") + "\n" + tail).expect("write");
        verify(&setup, &file, &["--open-tail"])
    };
    let (code, r) = live("");
    assert_eq!(code, 0, "{r}");
    // A crash while writing seq n+1: torn, not a break.
    let (code, r) = live(&format!("{{\"seq\":{},\"type\":\"requ", n + 1));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["torn"], 1);
    // Appended text that no crash leaves: a break.
    for junk in [
        "junk".to_string(),
        format!("{{\"seq\":{},\"type\":\"requ", n + 7),
        format!("{{\"seq\":{},\"type\":\"requ\n", n + 1),
    ] {
        let (code, r) = live(&junk);
        assert_eq!(code, 1, "{junk:?}: {r}");
        assert_eq!(r["broken_at"], format!("{}:{}", file.display(), n + 2));
    }
}
