use super::*;

// golang.org/x/mod sumdb/note/note_test.go (BSD-3-Clause, The Go Authors).
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> VerifierKey {
    VerifierKey::parse(PETER_VKEY).expect("valid test input")
}
fn enoch() -> VerifierKey {
    VerifierKey::parse(ENOCH_VKEY).expect("valid test input")
}
fn note(sigs: &str) -> String {
    format!("{TEXT}\n{sigs}")
}
fn parse(s: &str) -> Result<SignedNote, NoteError> {
    SignedNote::parse(s.as_bytes())
}
fn name(s: &str) -> KeyName {
    KeyName::new(s).expect("valid test input")
}

#[test]
fn sign_reproduces_go_bytes() {
    let signer = SignerKey::parse(PETER_SKEY).expect("valid test input");
    let signed = SignedNote::sign(
        NoteText::new(TEXT.into()).expect("valid test input"),
        &signer,
    )
    .expect("valid test input");
    assert_eq!(
        String::from_utf8(signed.to_bytes()).expect("valid test input"),
        note(PETER_SIG)
    );
}

#[test]
fn verify_accepts_known_and_ignores_unknown() {
    let n = parse(&note(&format!("{PETER_SIG}{ENOCH_SIG}"))).expect("valid test input");
    let v = n.verify(&[peter()]).expect("valid test input");
    assert_eq!(v.text().as_str(), TEXT);
    assert_eq!(v.verified_by(), &[peter()]);
    assert_eq!(v.note().signatures().len(), 2);
    let both = n.verify(&[enoch(), peter()]).expect("valid test input");
    assert_eq!(both.verified_by(), &[peter(), enoch()]);
    assert_eq!(n.verify(&[]), Err(NoteError::NoKnownSignature));
    assert_eq!(
        n.to_bytes(),
        note(&format!("{PETER_SIG}{ENOCH_SIG}")).into_bytes()
    );
}

#[test]
fn same_name_other_id_and_same_id_other_name_are_ignored() {
    let other_id = PETER_SIG.replace("x08go", "x08gp");
    let n = parse(&note(&format!("{other_id}{ENOCH_SIG}"))).expect("valid test input");
    assert_eq!(n.verify(&[peter()]), Err(NoteError::NoKnownSignature));
    let other_name = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
    let n = parse(&note(&other_name)).expect("valid test input");
    assert_eq!(n.verify(&[peter()]), Err(NoteError::NoKnownSignature));
}

#[test]
fn a_bad_signature_of_a_known_key_refuses_the_note() {
    let bad = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    let n = parse(&note(&format!("{ENOCH_SIG}{bad}"))).expect("valid test input");
    let want = NoteError::InvalidSignature {
        name: name("PeterNeumann"),
        id: peter().id(),
    };
    assert_eq!(n.verify(&[peter(), enoch()]), Err(want));
    // A known key's line of the wrong length is an invalid signature too.
    let short = "\u{2014} PeterNeumann x08gowE=\n";
    let n = parse(&note(&format!("{ENOCH_SIG}{short}"))).expect("valid test input");
    let want = NoteError::InvalidSignature {
        name: name("PeterNeumann"),
        id: peter().id(),
    };
    assert_eq!(n.verify(&[enoch(), peter()]), Err(want));
    // A different text under the same signature.
    let n =
        parse(&format!("{}\n{PETER_SIG}", TEXT.replace("you", "we"))).expect("valid test input");
    assert!(matches!(
        n.verify(&[peter()]),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn known_keys_must_be_unambiguous_note_keys() {
    let n = parse(&note(PETER_SIG)).expect("valid test input");
    let want = NoteError::AmbiguousKey {
        name: name("EnochRoot"),
        id: enoch().id(),
    };
    assert_eq!(n.verify(&[enoch(), peter(), enoch()]), Err(want));
    let cosigner = SignerKey::from_seed(name("w"), SignatureType::CosignatureV1, &[7; 32]);
    let want = NoteError::WrongKeyType {
        name: name("w"),
        kind: SignatureType::CosignatureV1,
    };
    assert_eq!(
        n.verify(&[peter(), cosigner.verifier().clone()]),
        Err(want.clone())
    );
    let text = NoteText::new(TEXT.into()).expect("valid test input");
    assert_eq!(SignedNote::sign(text, &cosigner), Err(want));
}

#[test]
fn text_rules() {
    assert_eq!(
        NoteText::new(String::new()),
        Err(NoteError::TextNotTerminated)
    );
    assert_eq!(
        NoteText::new("abc".into()),
        Err(NoteError::TextNotTerminated)
    );
    assert_eq!(
        NoteText::new("a\tb\n".into()),
        Err(NoteError::ControlCharacter { offset: 1 })
    );
    assert_eq!(
        NoteText::new("a\rb\n".into()),
        Err(NoteError::ControlCharacter { offset: 1 })
    );
    let big = "a".repeat(MAX_NOTE_BYTES) + "\n";
    assert_eq!(
        NoteText::new(big),
        Err(NoteError::TooLarge {
            len: MAX_NOTE_BYTES + 1
        })
    );
    // Blank lines inside the text are allowed: the last one separates.
    let text = NoteText::new("a\n\nb\n".into()).expect("valid test input");
    let signer = SignerKey::parse(PETER_SKEY).expect("valid test input");
    let signed = SignedNote::sign(text.clone(), &signer).expect("valid test input");
    let back = SignedNote::parse(&signed.to_bytes()).expect("valid test input");
    assert_eq!(back.text(), &text);
    assert!(back.verify(&[peter()]).is_ok());
}

#[test]
fn malformed_notes_are_refused_exactly() {
    use NoteError::*;
    let cases: Vec<(String, NoteError)> = vec![
        // sumdb/note's badMsgs, each with the variant it maps to here.
        (TEXT.into(), NoBlankLine),
        (format!("{TEXT}\n"), NoSignatures),
        (note(&PETER_SIG[..PETER_SIG.len() - 1]), SignatureNotTerminated),
        (format!("\x01{}", note(PETER_SIG)), ControlCharacter { offset: 0 }),
        (
            format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
            SignatureNotTerminated,
        ),
        (
            format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            SignatureBase64 { line: 1 },
        ),
        (note(&format!("{PETER_SIG}Unexpected line.\n")), SignaturePrefix { line: 2 }),
        // Our own.
        (String::new(), NoBlankLine),
        ("\n\n".into(), NoSignatures),
        (note("- PeterNeumann x08go/ZJ==\n"), SignaturePrefix { line: 1 }),
        (note("\u{2014}PeterNeumann x08go/ZJ\n"), SignaturePrefix { line: 1 }),
        (note("\u{2014} PeterNeumann\n"), SignatureShape { line: 1 }),
        (note("\u{2014}  x08go/ZJ\n"), SignatureName { line: 1, source: KeyError::EmptyName }),
        (note("\u{2014} a+b x08go/ZJ\n"), SignatureName { line: 1, source: KeyError::NameCharacter }),
        (note("\u{2014} PeterNeumann x08go/ZJ \n"), SignatureBase64 { line: 1 }),
        (note("\u{2014} PeterNeumann x08go/Z\n"), SignatureBase64 { line: 1 }),
        (note("\u{2014} PeterNeumann x08gowF=\n"), SignatureBase64 { line: 1 }),
        (note("\u{2014} PeterNeumann x08g\n"), SignatureTooShort { line: 1 }),
        (note("\u{2014} PeterNeumann \n"), SignatureTooShort { line: 1 }),
        (note(&format!("{PETER_SIG}\n")), NoSignatures),
        (
            note(&format!("{PETER_SIG}{PETER_SIG}")),
            DuplicateSignature { name: name("PeterNeumann"), id: KeyId([0xc7, 0x4f, 0x20, 0xa3]) },
        ),
        (
            note(&format!("{PETER_SIG}{}", PETER_SIG.replace("x08go/", "x08go+"))),
            DuplicateSignature { name: name("PeterNeumann"), id: KeyId([0xc7, 0x4f, 0x20, 0xa3]) },
        ),
        (note(&ENOCH_SIG.replace('\u{2014}', "\u{2014}\r")), ControlCharacter { offset: TEXT.len() + 4 }),
    ];
    for (input, want) in cases {
        assert_eq!(parse(&input), Err(want), "{input:?}");
    }
    assert_eq!(
        SignedNote::parse(b"\xff\n\n\xe2\x80\x94 a AAAAAAA=\n"),
        Err(NotUtf8)
    );
}

#[test]
fn oversized_and_overfull_notes_are_refused() {
    // 101 signatures (sumdb/note's own limit test); 100 distinct ones pass.
    let many: String = (0..=MAX_SIGNATURES)
        .map(|i| format!("\u{2014} k{i} AAAAAAA=\n"))
        .collect();
    assert_eq!(parse(&note(&many)), Err(NoteError::TooManySignatures));
    let enough: String = (0..MAX_SIGNATURES)
        .map(|i| format!("\u{2014} k{i} AAAAAAA=\n"))
        .collect();
    assert_eq!(
        parse(&note(&enough))
            .expect("valid test input")
            .signatures()
            .len(),
        MAX_SIGNATURES
    );
    let repeated = note(&PETER_SIG.repeat(101));
    assert_eq!(parse(&repeated), Err(NoteError::TooManySignatures));
    let twice = note(&PETER_SIG.repeat(2));
    assert!(matches!(
        parse(&twice),
        Err(NoteError::DuplicateSignature { .. })
    ));
    let huge = note(&"\u{2014} k AAAAAAA=\n".repeat(MAX_NOTE_BYTES / 10));
    assert_eq!(parse(&huge), Err(NoteError::TooLarge { len: huge.len() }));
}

#[test]
fn truncations_and_garbage_never_panic() {
    let full = note(&format!("{PETER_SIG}{ENOCH_SIG}"));
    let bytes = full.as_bytes();
    for end in 0..bytes.len() {
        let _ = SignedNote::parse(&bytes[..end]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut m = bytes.to_vec();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state as usize) % m.len();
        m[at] = (state >> 32) as u8;
        if let Ok(n) = SignedNote::parse(&m) {
            let _ = n.verify(&[peter(), enoch()]);
        }
    }
}

#[test]
fn push_refuses_duplicates_and_overflow() {
    let signer = SignerKey::parse(PETER_SKEY).expect("valid test input");
    let mut n = SignedNote::sign(
        NoteText::new(TEXT.into()).expect("valid test input"),
        &signer,
    )
    .expect("valid test input");
    let want = NoteError::DuplicateSignature {
        name: name("PeterNeumann"),
        id: peter().id(),
    };
    assert_eq!(n.add_signature(&signer), Err(want));
    for i in 1..MAX_SIGNATURES {
        n.push(SignatureLine {
            name: name(&format!("k{i}")),
            id: KeyId([0; 4]),
            payload: vec![0],
        })
        .expect("valid test input");
    }
    let extra = SignatureLine {
        name: name("extra"),
        id: KeyId([0; 4]),
        payload: vec![0],
    };
    assert_eq!(n.push(extra), Err(NoteError::TooManySignatures));
    let mut n = SignedNote::sign(
        NoteText::new(TEXT.into()).expect("valid test input"),
        &signer,
    )
    .expect("valid test input");
    let big = SignatureLine {
        name: name("big"),
        id: KeyId([0; 4]),
        payload: vec![0; MAX_NOTE_BYTES],
    };
    assert!(matches!(n.push(big), Err(NoteError::TooLarge { .. })));
}

#[test]
fn encoded_len_is_the_length_of_the_line() {
    for n in 1..80 {
        let line = SignatureLine {
            name: name("k\u{e9}y"),
            id: KeyId([1, 2, 3, 4]),
            payload: vec![0xab; n],
        };
        assert_eq!(line.encoded_len(), line.encode().len(), "payload {n}");
    }
}

#[test]
fn signature_line_look_alikes_and_spec_edges() {
    use NoteError::*;
    let sig = &PETER_SIG["\u{2014} ".len()..];
    // Only U+2014 and an ASCII space start a signature line.
    for prefix in [
        "\u{2013} ",
        "\u{2015} ",
        "-- ",
        "\u{2014}\u{a0}",
        " \u{2014} ",
    ] {
        assert_eq!(
            parse(&note(&format!("{prefix}{sig}"))),
            Err(SignaturePrefix { line: 1 }),
            "{prefix:?}"
        );
    }
    // The em dash in an overlong UTF-8 form is not UTF-8.
    let mut overlong = format!("{TEXT}\n").into_bytes();
    overlong.extend_from_slice(b"\xf0\x82\x80\x94 ");
    overlong.extend_from_slice(sig.as_bytes());
    assert_eq!(SignedNote::parse(&overlong), Err(NotUtf8));
    // A NUL anywhere is a control character.
    assert_eq!(
        parse(&note(PETER_SIG).replacen('y', "\0", 1)),
        Err(ControlCharacter { offset: 3 })
    );
    // An overlong key name in a signature line.
    let long = format!("\u{2014} {} AAAAAAA=\n", "a".repeat(256));
    assert_eq!(
        parse(&note(&long)),
        Err(SignatureName {
            line: 1,
            source: KeyError::NameTooLong { len: 256 }
        })
    );
    // signed-note forbids only controls below U+0020: DEL is text.
    assert!(NoteText::new("a\u{7f}b\n".into()).is_ok());
    // A text whose own lines look like signatures: they stay text, split
    // at the last blank line, and a verifier sees only the real line.
    let signer = SignerKey::parse(PETER_SKEY).expect("valid test input");
    let body = format!("head\n\n{PETER_SIG}");
    let text = NoteText::new(body.clone()).expect("valid test input");
    let signed = SignedNote::sign(text, &signer).expect("valid test input");
    let back = SignedNote::parse(&signed.to_bytes()).expect("valid test input");
    assert_eq!(back.text().as_str(), body);
    assert_eq!(back.signatures().len(), 1);
    assert!(back.verify(&[peter()]).is_ok());
}

#[test]
fn push_refuses_a_line_the_parser_would_refuse() {
    // Before: an empty payload was pushed, and the note's own bytes then
    // failed to parse (a signature of 4 bytes is SignatureTooShort).
    let signer = SignerKey::parse(PETER_SKEY).expect("valid test input");
    let mut n = SignedNote::sign(
        NoteText::new(TEXT.into()).expect("valid test input"),
        &signer,
    )
    .expect("valid test input");
    let empty = SignatureLine {
        name: name("w"),
        id: KeyId([0; 4]),
        payload: Vec::new(),
    };
    assert_eq!(n.push(empty), Err(NoteError::SignatureTooShort { line: 2 }));
    assert!(SignedNote::parse(&n.to_bytes()).is_ok());
}
