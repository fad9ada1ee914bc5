//! tests/vectors/tlog-note.json (C2SP spec examples, golang.org/x/mod
//! sumdb/note's vectors, generated checkpoints and cosignatures) against
//! src/tlog: what must verify verifies, what must be refused is refused
//! with the named error, and what we can sign we sign to the same bytes.

use base64::Engine;
use sealgate::tlog::{
    cosign, cosigned_message, verify_cosignature, Checkpoint, SignedNote, SignerKey, VerifierKey,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tlog-note.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors readable"))
        .expect("vectors are JSON")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{key} is a list"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

/// The variant name of an error's Debug form (`InvalidSignature { .. }`).
fn variant(e: &impl std::fmt::Debug) -> String {
    let d = format!("{e:?}");
    d.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn known(v: &Value) -> Vec<VerifierKey> {
    list(v, "known")
        .iter()
        .map(|k| VerifierKey::parse(k.as_str().expect("vkey")).expect("known vkey"))
        .collect()
}

fn note_bytes(v: &Value) -> Vec<u8> {
    match v.get("note_base64") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.as_str().expect("b64"))
            .expect("b64"),
        None => s(v, "note").as_bytes().to_vec(),
    }
}

#[test]
fn keys_parse_and_round_trip() {
    let v = vectors();
    for k in list(&v, "keys") {
        let vkey = VerifierKey::parse(s(k, "vkey")).expect("vkey parses");
        assert_eq!(vkey.to_string(), s(k, "vkey"));
        if let Some(skey) = k.get("skey").and_then(Value::as_str) {
            let signer = SignerKey::parse(skey).expect("skey parses");
            assert_eq!(signer.verifier(), &vkey);
            assert_eq!(signer.to_skey().as_str(), skey);
        }
    }
    for k in list(&v, "bad_keys") {
        let err = VerifierKey::parse(s(k, "vkey")).expect_err(s(k, "vkey"));
        assert_eq!(variant(&err), s(k, "error"), "{}", s(k, "vkey"));
    }
}

#[test]
fn notes_verify_or_are_refused_as_named() {
    let v = vectors();
    for n in list(&v, "notes") {
        let bytes = note_bytes(n);
        let result = SignedNote::parse(&bytes).and_then(|p| p.verify(&known(n)));
        match n.get("error").and_then(Value::as_str) {
            Some(want) => {
                let err = result.expect_err(s(n, "source"));
                assert_eq!(variant(&err), want, "{}", s(n, "source"));
            }
            None => {
                let ok = result.unwrap_or_else(|e| panic!("{}: {e}", s(n, "source")));
                assert_eq!(ok.text().as_str(), s(n, "text"));
                let by: Vec<&str> = ok.verified_by().iter().map(|k| k.name().as_str()).collect();
                let want: Vec<&str> = list(n, "verified_by")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert_eq!(by, want, "{}", s(n, "source"));
                assert_eq!(ok.note().to_bytes(), bytes);
            }
        }
        if let Some(lines) = n.get("lines") {
            let parsed = SignedNote::parse(&bytes).expect("parses");
            for (line, want) in parsed
                .signatures()
                .iter()
                .zip(lines.as_array().expect("lines"))
            {
                assert_eq!(line.name.as_str(), want[0].as_str().expect("name"));
                assert_eq!(line.id.to_string(), want[1].as_str().expect("id"));
                assert_eq!(line.payload.len() as u64, want[2].as_u64().expect("len"));
            }
        }
        for signer in n
            .get("sign_with")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let signer = SignerKey::parse(signer.as_str().expect("skey")).expect("skey");
            let parsed = SignedNote::parse(&bytes).expect("parses");
            let signed = SignedNote::sign(parsed.text().clone(), &signer).expect("signs");
            assert_eq!(signed.to_bytes(), bytes, "{}", s(n, "source"));
        }
    }
}

#[test]
fn checkpoints_parse_format_and_sign() {
    let v = vectors();
    for c in list(&v, "checkpoints") {
        let text = s(c, "text");
        if let Some(want) = c.get("error").and_then(Value::as_str) {
            let err = Checkpoint::parse(text).expect_err(text);
            assert_eq!(variant(&err), want, "{text:?}");
            continue;
        }
        let cp = Checkpoint::parse(text).expect("checkpoint parses");
        assert_eq!(cp.origin(), s(c, "origin"));
        assert_eq!(cp.size().to_string(), s(c, "size"));
        assert_eq!(hex::encode(cp.root_hash()), s(c, "root_hash_hex"));
        let ext: Vec<&str> = list(c, "extensions")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(cp.extensions(), ext.as_slice());
        assert_eq!(cp.format(), text);
        let built = Checkpoint::with_extensions(
            cp.origin(),
            cp.size(),
            *cp.root_hash(),
            cp.extensions().to_vec(),
        );
        assert_eq!(built.as_ref(), Ok(&cp));
        if let Some(skey) = c.get("sign_with").and_then(Value::as_str) {
            let signer = SignerKey::parse(skey).expect("skey");
            let signed =
                SignedNote::sign(cp.to_note_text().expect("note text"), &signer).expect("signs");
            assert_eq!(signed.to_bytes(), s(c, "note").as_bytes());
            let log = VerifierKey::parse(s(c, "log_vkey")).expect("vkey");
            let verified = SignedNote::parse(s(c, "note").as_bytes())
                .and_then(|n| n.verify(&[log]))
                .expect("verifies");
            assert_eq!(Checkpoint::from_note(&verified).as_ref(), Ok(&cp));
        }
    }
}

#[test]
fn cosignatures_verify_reproduce_or_are_refused_as_named() {
    let v = vectors();
    for c in list(&v, "cosignatures") {
        let note = SignedNote::parse(s(c, "note").as_bytes()).expect("note parses");
        let witness = VerifierKey::parse(s(c, "witness_vkey")).expect("vkey");
        let log = VerifierKey::parse(s(c, "log_vkey")).expect("vkey");
        note.verify(&[log]).expect("the log's signature verifies");
        let result = verify_cosignature(&note, &witness);
        if let Some(want) = c.get("error").and_then(Value::as_str) {
            assert_eq!(variant(&result.expect_err(want)), want);
            continue;
        }
        let ts: u64 = s(c, "timestamp").parse().expect("timestamp");
        assert_eq!(result, Ok(ts));
        let cp = Checkpoint::parse(s(c, "checkpoint")).expect("checkpoint");
        assert_eq!(cosigned_message(&cp, ts), s(c, "message").as_bytes());
        let signer = SignerKey::parse(s(c, "witness_skey")).expect("skey");
        let line = cosign(&cp, &signer, ts).expect("cosigns");
        assert_eq!(line.encode(), s(c, "line"));
    }
}
