use super::*;
use crate::tlog::{cosign, NoteText, SignatureType, SignerKey};

// c2sp.org/tlog-witness's example request and response bodies
// (github.com/C2SP/C2SP tlog-witness.md at 5ba5ee8), byte for byte.
const SPEC_REQUEST: &str = "old 20852014\n\
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
\n\
example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
\u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";

const SPEC_RESPONSE: &str = "\
\u{2014} witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n\
\u{2014} witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n\
\u{2014} witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";

fn name(s: &str) -> KeyName {
    KeyName::new(s).expect("valid test input")
}

fn spec() -> AddCheckpoint {
    AddCheckpoint::parse(SPEC_REQUEST.as_bytes()).expect("the spec's example parses")
}

/// A log key, a checkpoint note it signed, and a witness key.
fn signed(size: u64) -> (SignedNote, Checkpoint, SignerKey) {
    let log = SignerKey::from_seed(name("log.example/a"), SignatureType::Ed25519, &[1; 32]);
    let checkpoint = Checkpoint::new("log.example/a", size, [7; 32]).expect("valid test input");
    let note = SignedNote::sign(checkpoint.to_note_text().expect("valid test input"), &log)
        .expect("valid test input");
    let witness = SignerKey::from_seed(
        name("witness.example/w1"),
        SignatureType::CosignatureV1,
        &[2; 32],
    );
    (note, checkpoint, witness)
}

#[test]
fn the_spec_request_parses_and_formats_back_byte_for_byte() {
    let r = spec();
    assert_eq!(r.old_size, 20852014);
    assert_eq!(r.proof.len(), 4);
    assert_eq!(
        r.proof[0].to_base64(),
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw="
    );
    assert_eq!(r.note.signatures().len(), 2);
    let c = r.unverified_checkpoint().expect("valid test input");
    assert_eq!(
        (c.origin(), c.size()),
        ("example.com/behind-the-sofa", 20852163)
    );
    assert_eq!(
        r.format().expect("valid test input"),
        SPEC_REQUEST.as_bytes()
    );
}

#[test]
fn an_empty_proof_and_old_zero_parse() {
    let (note, _, _) = signed(5);
    let body = format!(
        "old 0\n\n{}",
        String::from_utf8(note.to_bytes()).expect("utf-8")
    );
    let r = AddCheckpoint::parse(body.as_bytes()).expect("valid test input");
    assert_eq!((r.old_size, r.proof.len()), (0, 0));
    assert_eq!(r.format().expect("valid test input"), body.as_bytes());
}

#[test]
fn malformed_requests_are_refused_exactly() {
    let (note, _, _) = signed(5);
    let note = String::from_utf8(note.to_bytes()).expect("utf-8");
    let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=";
    let cases: Vec<(String, ProtocolError)> = vec![
        (String::new(), ProtocolError::OldLine),
        ("old 1".into(), ProtocolError::OldLine),
        (format!("old 01\n\n{note}"), ProtocolError::OldLine),
        (format!("old 00\n\n{note}"), ProtocolError::OldLine),
        (format!("old +1\n\n{note}"), ProtocolError::OldLine),
        (format!("old  1\n\n{note}"), ProtocolError::OldLine),
        (format!("old 1 \n\n{note}"), ProtocolError::OldLine),
        (format!("Old 1\n\n{note}"), ProtocolError::OldLine),
        (format!("old\n\n{note}"), ProtocolError::OldLine),
        (format!("old \n\n{note}"), ProtocolError::OldLine),
        (format!("old 1\r\n\n{note}"), ProtocolError::OldLine),
        (
            format!("old 18446744073709551616\n\n{note}"),
            ProtocolError::OldLine,
        ),
        (format!("old 1\n{h}"), ProtocolError::NoBlankLine),
        (format!("old 1\n{h}\n"), ProtocolError::NoBlankLine),
        // Not the canonical spelling: missing padding, trailing bits set,
        // URL alphabet, a space, 31 bytes.
        (
            format!("old 1\n{}\n\n{note}", &h[..43]),
            ProtocolError::ProofLine { line: 1 },
        ),
        (
            format!("old 1\n{h}\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkax=\n\n{note}"),
            ProtocolError::ProofLine { line: 2 },
        ),
        (
            format!("old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpka-=\n\n{note}"),
            ProtocolError::ProofLine { line: 1 },
        ),
        (
            format!("old 1\n {h}\n\n{note}"),
            ProtocolError::ProofLine { line: 1 },
        ),
        (
            format!("old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkQ==\n\n{note}"),
            ProtocolError::ProofLine { line: 1 },
        ),
        (
            format!("old 1\n{}\n{note}", format!("{h}\n").repeat(64)),
            ProtocolError::TooManyProofLines,
        ),
        (
            "old 1\n\nexample.com/x\n1\n".into(),
            ProtocolError::Note(NoteError::NoBlankLine),
        ),
        (
            format!(
                "old 1\n\n{}",
                note.replacen("log.example/a\n5\n", "log.example/a\n05\n", 1)
            ),
            ProtocolError::Checkpoint(CheckpointError::SizeLeadingZero),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(AddCheckpoint::parse(body.as_bytes()), Err(want), "{body:?}");
    }
    // 63 lines are the limit, not an error.
    let full = format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63));
    assert_eq!(
        AddCheckpoint::parse(full.as_bytes())
            .expect("63 proof lines parse")
            .proof
            .len(),
        63
    );
}

#[test]
fn an_oversized_body_is_refused_unread() {
    let body = vec![b'x'; MAX_REQUEST_BYTES + 1];
    assert_eq!(
        AddCheckpoint::parse(&body),
        Err(ProtocolError::TooLarge {
            len: MAX_REQUEST_BYTES + 1
        })
    );
}

#[test]
fn parse_leaves_the_size_order_to_the_witness_but_format_refuses_it() {
    // The spec answers 404 and 403 before 400 for old > size, so the
    // parser must not refuse it before the witness knows the origin.
    let (note, _, _) = signed(5);
    let body = format!(
        "old 6\n\n{}",
        String::from_utf8(note.to_bytes()).expect("utf-8")
    );
    let r = AddCheckpoint::parse(body.as_bytes()).expect("syntax is fine");
    assert_eq!(
        r.format(),
        Err(ProtocolError::OldSizeAboveCheckpoint { old: 6, size: 5 })
    );
    let mut long = spec();
    long.proof = vec![Hash([0; 32]); 64];
    assert_eq!(long.format(), Err(ProtocolError::TooManyProofLines));
}

#[test]
fn cosignatures_of_trusted_keys_verify_and_others_are_ignored() {
    let (note, checkpoint, witness) = signed(5);
    let line = cosign(&checkpoint, &witness, 1_700_000_000).expect("valid test input");
    let other = SignerKey::from_seed(
        name("witness.example/w2"),
        SignatureType::CosignatureV1,
        &[3; 32],
    );
    let other_line = cosign(&checkpoint, &other, 1_700_000_001).expect("valid test input");
    let body = format_cosignatures(&[other_line.clone(), line.clone()]);
    let got = parse_cosignatures(body.as_bytes(), &note, &[witness.verifier().clone()])
        .expect("valid test input");
    assert_eq!(got, vec![line.clone()]);
    let both = parse_cosignatures(
        body.as_bytes(),
        &note,
        &[witness.verifier().clone(), other.verifier().clone()],
    )
    .expect("valid test input");
    assert_eq!(both, vec![other_line, line.clone()]);
    // The lines go onto the note and verify there too.
    let mut cosigned = note.clone();
    cosigned.push(line).expect("valid test input");
    assert_eq!(
        verify_cosignature(&cosigned, witness.verifier()),
        Ok(1_700_000_000)
    );
}

#[test]
fn the_spec_response_parses_and_its_unknown_keys_are_ignored() {
    let r = spec();
    let (_, _, witness) = signed(5);
    assert_eq!(
        parse_cosignatures(
            SPEC_RESPONSE.as_bytes(),
            &r.note,
            &[witness.verifier().clone()]
        ),
        Err(ResponseError::NoKnownCosignature)
    );
}

#[test]
fn bad_answers_are_refused_exactly() {
    let (note, checkpoint, witness) = signed(5);
    let keys = [witness.verifier().clone()];
    let good = cosign(&checkpoint, &witness, 1_700_000_000).expect("valid test input");
    // Signed over another checkpoint: the witness's key, not this note.
    let other = Checkpoint::new("log.example/a", 6, [7; 32]).expect("valid test input");
    let wrong = cosign(&other, &witness, 1_700_000_000).expect("valid test input");
    let zero = cosign(&checkpoint, &witness, 0).expect("valid test input");
    let parse = |body: &str| parse_cosignatures(body.as_bytes(), &note, &keys);
    assert_eq!(parse(""), Err(ResponseError::Empty));
    assert_eq!(
        parse(&format!("\n{}", good.encode())),
        Err(ResponseError::Lines(NoteError::NoBlankLine))
    );
    assert_eq!(
        parse(good.encode().trim_end()),
        Err(ResponseError::Lines(NoteError::SignatureNotTerminated))
    );
    assert_eq!(
        parse("- witness.example/w1 AAAAAAA=\n"),
        Err(ResponseError::Lines(NoteError::SignaturePrefix { line: 1 }))
    );
    assert_eq!(
        parse(&format!("{}{}", good.encode(), good.encode())),
        Err(ResponseError::Lines(NoteError::DuplicateSignature {
            name: good.name.clone(),
            id: good.id
        }))
    );
    assert_eq!(
        parse(&wrong.encode()),
        Err(ResponseError::Invalid {
            name: good.name.clone(),
            id: good.id,
            source: CosignatureError::InvalidSignature {
                name: good.name.clone(),
                id: good.id
            }
        })
    );
    assert_eq!(
        parse(&zero.encode()),
        Err(ResponseError::ZeroTimestamp {
            name: good.name.clone(),
            id: good.id
        })
    );
    let short = SignatureLine {
        payload: vec![1; 10],
        ..good.clone()
    };
    assert!(matches!(
        parse(&short.encode()),
        Err(ResponseError::Invalid {
            source: CosignatureError::PayloadLength { len: 10, .. },
            ..
        })
    ));
    // An Ed25519 (note) key of the same name and seed has another key ID:
    // its lines are not this witness's.
    assert!(matches!(
        parse_cosignatures(
            good.encode().as_bytes(),
            &note,
            &[VerifierKey::new(
                name("witness.example/w1"),
                SignatureType::Ed25519,
                ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key()
            )]
        ),
        Err(ResponseError::NoKnownCosignature)
    ));
    let big = "x".repeat(MAX_RESPONSE_BYTES + 1);
    assert_eq!(
        parse(&big),
        Err(ResponseError::TooLarge {
            len: MAX_RESPONSE_BYTES + 1
        })
    );
}

#[test]
fn size_bodies_are_strict() {
    assert_eq!(format_size(42), "42\n");
    assert_eq!(parse_size(b"42\n"), Ok(42));
    assert_eq!(parse_size(b"0\n"), Ok(0));
    for bad in [
        &b"42"[..],
        b"042\n",
        b"\n",
        b"42\n\n",
        b" 42\n",
        b"18446744073709551616\n",
        b"-1\n",
    ] {
        assert_eq!(parse_size(bad), Err(ResponseError::SizeBody), "{bad:?}");
    }
}

#[test]
fn note_text_is_the_request_text() {
    // Guard for the concatenation trick: a text with its own blank line is
    // not a checkpoint, so a request never carries one.
    assert!(NoteText::new("a\n\nb\n".into()).is_ok());
    assert!(Checkpoint::parse("a\n\nb\n").is_err());
}
