//! The witness over real HTTPS (`sealgate audit witness` on 127.0.0.1):
//! what it cosigns, every status the spec gives a refusal, and the
//! connections it never serves (TLS 1.2, plaintext).

#[path = "witness_common/mod.rs"]
mod witness_common;

use std::sync::Arc;

use sealgate::tlog::{verify_cosignature, Hash, KeyName, SignatureType, SignedNote, SignerKey};
use sealgate::witness::protocol::{parse_cosignatures, parse_size, MAX_REQUEST_BYTES};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use witness_common::{Setup, ORIGIN};

/// The monitoring path of [`ORIGIN`].
fn monitoring_path() -> String {
    format!(
        "/{}/checkpoint",
        hex::encode(sha2::Sha256::digest(ORIGIN.as_bytes()))
    )
}

#[tokio::test]
async fn good_checkpoints_are_cosigned_and_served_to_monitors() {
    let s = Setup::new();
    let w = s.start();
    let client = s.client();
    // Nothing cosigned yet: the monitoring URL and --show say so.
    assert_eq!(w.get(&client, &monitoring_path()).await.status, 404);
    let shown = s.sealgate(&[
        "audit",
        "witness",
        "--config",
        "witness.toml",
        "--show",
        ORIGIN,
    ]);
    assert_eq!(shown.status.code(), Some(3), "{shown:?}");

    let mut last = None;
    for (old, new) in [(0, 5), (5, 5), (5, 17), (17, 64)] {
        let a = w.post(&client, s.good(old, new)).await;
        assert_eq!(a.status, 200, "{old} → {new}: {}", a.text());
        assert!(
            a.content_type.starts_with("text/plain"),
            "{}",
            a.content_type
        );
        let note = s.note(new);
        let lines =
            parse_cosignatures(&a.body, &note, std::slice::from_ref(&s.witness)).expect("verified");
        assert_eq!(lines.len(), 1);
        let mut cosigned = note.clone();
        cosigned.push(lines[0].clone()).expect("push");
        let t = verify_cosignature(&cosigned, &s.witness).expect("the cosignature verifies");
        assert!(t > 1_700_000_000, "{t}");
        last = Some(cosigned);
    }
    // Monitors and auditors get the last cosigned note: the checkpoint,
    // the log's signature, the witness's cosignature.
    let m = w.get(&client, &monitoring_path()).await;
    assert_eq!(m.status, 200);
    let served = SignedNote::parse(&m.body).expect("a note");
    assert_eq!(Some(&served), last.as_ref());
    served
        .verify(&[s.log.verifier().clone()])
        .expect("log signature");
    verify_cosignature(&served, &s.witness).expect("cosignature");
    let shown = witness_common::ok(&s.sealgate(&[
        "audit",
        "witness",
        "--config",
        "witness.toml",
        "--show",
        ORIGIN,
    ]));
    assert_eq!(shown.as_bytes(), &m.body[..]);
    // An auditor without the private key: --witness-key gives the vkey.
    std::fs::rename(s.path("w.skey"), s.path("w.skey.away")).expect("skey gone");
    let show = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "witness",
            "--config",
            "witness.toml",
            "--show",
            ORIGIN,
        ];
        args.extend_from_slice(extra);
        s.sealgate(&args)
    };
    let without = show(&[]);
    assert!(!without.status.success(), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("w.skey"),
        "{without:?}"
    );
    let vkey = s.witness.to_string();
    let shown = witness_common::ok(&show(&["--witness-key", &vkey]));
    assert_eq!(shown.as_bytes(), &m.body[..]);
    std::fs::write(s.path("w.vkey"), format!("{vkey}\n")).expect("vkey file");
    let shown = witness_common::ok(&show(&["--witness-key", "w.vkey"]));
    assert_eq!(shown.as_bytes(), &m.body[..]);
    // Another witness's key: the state is not cosigned by it.
    let other = SignerKey::from_seed(
        KeyName::new("w.example/other").expect("valid test input"),
        SignatureType::CosignatureV1,
        &[7; 32],
    );
    let refused = show(&["--witness-key", &other.verifier().to_string()]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(refused.stdout.is_empty());
    std::fs::rename(s.path("w.skey.away"), s.path("w.skey")).expect("skey back");
    assert_eq!(w.get(&client, "/00/checkpoint").await.status, 404);
}

#[tokio::test]
async fn every_refusal_has_the_spec_status_and_nothing_is_cosigned() {
    let s = Setup::new();
    let w = s.start();
    let client = s.client();
    assert_eq!(w.post(&client, s.good(0, 10)).await.status, 200);
    let forged = Hash([0xaa; 32]);
    let stranger = SignerKey::from_seed(
        KeyName::new(ORIGIN).expect("valid test input"),
        SignatureType::Ed25519,
        &[9; 32],
    );
    let other_log = s.note_with("other.example/log", 3, forged, &s.log);

    // 422: a fork of the log (size 12 whose first 10 leaves differ), a
    // proof that does not verify.
    for body in [
        s.body(10, s.proof(10, 12), s.note_with(ORIGIN, 12, forged, &s.log)),
        s.body(10, s.proof(9, 12), s.note(12)),
    ] {
        let a = w.post(&client, body).await;
        assert_eq!(a.status, 422, "{}", a.text());
        assert!(a.text().contains("not consistent"), "{}", a.text());
    }
    // 409 with the size: a rewrite at the same size (c2sp.org/tlog-witness:
    // "If the old size matches the checkpoint size, the witness MUST check
    // that the root hashes are also identical. If they don't match, the
    // witness MUST respond with a 409 Conflict.").
    let a = w
        .post(
            &client,
            s.body(10, vec![], s.note_with(ORIGIN, 10, forged, &s.log)),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(a.text(), "10\n");
    // 409: the client believes another size (a rollback to 8 from 5, or a
    // fresh client with 0): the body tells it 10.
    for body in [s.good(5, 8), s.good(0, 12)] {
        let a = w.post(&client, body).await;
        assert_eq!(a.status, 409, "{}", a.text());
        assert_eq!(a.content_type, "text/x.tlog.size");
        assert_eq!(a.body, b"10\n");
        assert_eq!(parse_size(&a.body), Ok(10));
    }
    // 400: smaller than what was cosigned, claimed from 10; bad syntax.
    let a = w.post(&client, s.body(10, vec![], s.note(8))).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a
        .text()
        .contains("old size 10 is above the checkpoint size 8"));
    let a = w.post(&client, b"old 010\n\n".to_vec()).await;
    assert_eq!(a.status, 400, "{}", a.text());
    // 404: a log this witness does not know.
    let a = w.post(&client, s.body(0, vec![], other_log)).await;
    assert_eq!(a.status, 404, "{}", a.text());
    // 403: signed by another key under the log's name.
    let a = w
        .post(
            &client,
            s.body(
                10,
                s.proof(10, 12),
                s.note_with(ORIGIN, 12, s.root(12), &stranger),
            ),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text());
    // 413: over the largest request, refused before it is parsed.
    let a = w.post(&client, vec![b'x'; MAX_REQUEST_BYTES + 1]).await;
    assert_eq!(a.status, 413, "{}", a.text());
    // 405 and 404 for other methods and paths.
    let a = w.get(&client, "/add-checkpoint").await;
    assert_eq!(a.status, 405);
    let a = client
        .post(format!("https://{}/other", w.addr))
        .body(s.good(10, 12))
        .send()
        .await
        .expect("answer");
    assert_eq!(a.status().as_u16(), 404);

    // Nothing of that moved the state: still 10, and 10 → 12 is cosigned.
    let served = w.get(&client, &monitoring_path()).await;
    assert!(served.text().starts_with(&format!("{ORIGIN}\n10\n")));
    assert_eq!(w.post(&client, s.good(10, 12)).await.status, 200);
}

#[tokio::test]
async fn a_tls_1_2_client_and_a_plaintext_client_get_no_answer() {
    let s = Setup::new();
    let w = s.start();
    // TLS 1.2 only, trusting the dev CA: the handshake fails.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.path("ca/ca.crt")).expect("ca");
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls 1.2")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(w.addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let err = connector
        .connect(name, tcp)
        .await
        .expect_err("a TLS 1.2 handshake is refused");
    assert!(
        err.to_string().contains("ProtocolVersion") || err.to_string().contains("protocol version"),
        "{err}"
    );

    // Plain HTTP: no HTTP answer, the connection is closed.
    let mut tcp = tokio::net::TcpStream::connect(w.addr).await.expect("tcp");
    tcp.write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 6\r\n\r\nold 0\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut got),
    )
    .await
    .expect("closed in time");
    let _ = read;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // The witness still serves TLS 1.3 afterwards.
    assert_eq!(w.post(&s.client(), s.good(0, 3)).await.status, 200);
}

#[tokio::test]
async fn a_kept_alive_connection_serves_a_series() {
    // One client, many requests: the answers come over HTTP/1.1 (the
    // witness offers only that) and each is correct in turn.
    let s = Setup::new();
    let w = s.start();
    let client = s.client();
    let mut old = 0;
    for new in 1..=20 {
        let r = client
            .post(&w.url)
            .body(s.good(old, new))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status().as_u16(), 200);
        old = new;
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    // Silent before the handshake, silent after it, and a body that never
    // ends: each connection is closed within its timeout (10 s) and the
    // witness keeps serving others meanwhile.
    let s = Setup::new();
    let w = s.start();
    let tls = Arc::new(sealgate::tls::backend_client_config(&s.path("ca/ca.crt")).expect("tls"));
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = || rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let started = std::time::Instant::now();
    let limit = sealgate::witness::HEADER_TIMEOUT + std::time::Duration::from_secs(5);

    let mut silent_tcp = tokio::net::TcpStream::connect(w.addr).await.expect("tcp");
    let mut silent_tls = connector
        .connect(
            name(),
            tokio::net::TcpStream::connect(w.addr).await.expect("tcp"),
        )
        .await
        .expect("handshake");
    let mut slow_body = connector
        .connect(
            name(),
            tokio::net::TcpStream::connect(w.addr).await.expect("tcp"),
        )
        .await
        .expect("handshake");
    slow_body
        .write_all(
            b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\nold 0\n",
        )
        .await
        .expect("write");
    slow_body.flush().await.expect("flush");

    // Others are served meanwhile.
    assert_eq!(w.post(&s.client(), s.good(0, 4)).await.status, 200);

    let (a, b, c) = tokio::join!(
        async {
            let mut got = Vec::new();
            tokio::time::timeout(limit, silent_tcp.read_to_end(&mut got)).await
        },
        async {
            let mut got = Vec::new();
            tokio::time::timeout(limit, silent_tls.read_to_end(&mut got)).await
        },
        async {
            let mut got = Vec::new();
            let r = tokio::time::timeout(limit, slow_body.read_to_end(&mut got)).await;
            (r, got)
        },
    );
    assert!(a.is_ok(), "a silent TCP connection was kept");
    assert!(b.is_ok(), "a silent TLS connection was kept");
    let (r, got) = c;
    assert!(r.is_ok(), "a slow body was waited for");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(started.elapsed() >= sealgate::witness::BODY_TIMEOUT);
}

// ---- review (rev-wit) F1: failed before the fix ----

/// A client that closes its connection right after sending a request:
/// hyper drops the service future (mid_message_detect_eof). Before the
/// fix, when that happened during the state write, the disk (`--show`) got
/// the new size while memory (GET) stayed behind, and a smaller fork from
/// the old size was then cosigned. Now disk and memory always agree and
/// the fork is refused.
#[tokio::test]
async fn a_request_abandoned_mid_write_keeps_disk_and_memory_together() {
    use sealgate::tlog::{consistency_proof, leaf_hash, tree_hash, MemoryTree};
    let s = Setup::new();
    let w = s.start();
    let client = s.client();
    let mut tree = MemoryTree::new();
    for i in 0..4000u32 {
        tree.push(leaf_hash(format!("line {i}").as_bytes()));
    }
    let req = |old: u64, new: u64| {
        let proof = if old == 0 {
            vec![]
        } else {
            consistency_proof(&tree, old, new).expect("proof")
        };
        let note = s.note_with(ORIGIN, new, tree_hash(&tree, new).expect("root"), &s.log);
        s.body(old, proof, note)
    };
    assert_eq!(w.post(&client, req(0, 5)).await.status, 200);
    let tls = Arc::new(sealgate::tls::backend_client_config(&s.path("ca/ca.crt")).expect("tls"));
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut cur = 5u64;
    let mut completed = 0;
    for attempt in 0..40u64 {
        let mut c = connector
            .connect(
                name.clone(),
                tokio::net::TcpStream::connect(w.addr).await.expect("tcp"),
            )
            .await
            .expect("handshake");
        let body = req(cur, cur + 10);
        let mut head = format!(
            "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        head.extend_from_slice(&body);
        c.write_all(&head).await.expect("write");
        c.flush().await.expect("flush");
        std::thread::sleep(std::time::Duration::from_micros(20 * (attempt % 50)));
        let _ = c.shutdown().await; // close_notify + FIN
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let served = w.get(&client, &monitoring_path()).await.text();
        let shown = String::from_utf8_lossy(
            &s.sealgate(&[
                "audit",
                "witness",
                "--config",
                "witness.toml",
                "--show",
                ORIGIN,
            ])
            .stdout,
        )
        .into_owned();
        let size = |t: &str| t.lines().nth(1).and_then(|l| l.parse::<u64>().ok());
        match (size(&served), size(&shown)) {
            (Some(m), Some(d)) if m == d => {
                if m != cur {
                    completed += 1;
                }
                cur = m;
            }
            other => {
                panic!("attempt {attempt}: memory (GET) and disk (--show) disagree: {other:?}")
            }
        }
    }
    // The abandoned requests ran to the end (nothing cancels them).
    assert!(completed > 0, "no abandoned request was stored");
    let last = cur;
    cur = last - 10;
    // A fork: the first `cur` leaves, then others; size cur+5 < cur+10.
    let mut fork = MemoryTree::new();
    for i in 0..cur as u32 {
        fork.push(leaf_hash(format!("line {i}").as_bytes()));
    }
    for i in 0..5u32 {
        fork.push(leaf_hash(format!("fork {i}").as_bytes()));
    }
    let note = s.note_with(
        ORIGIN,
        cur + 5,
        tree_hash(&fork, cur + 5).expect("root"),
        &s.log,
    );
    let proof = consistency_proof(&fork, cur, cur + 5).expect("proof");
    let a = w.post(&client, s.body(cur, proof, note)).await;
    assert_eq!(
        a.status,
        409,
        "a smaller fork of {last} from {cur}: {}",
        a.text()
    );
    assert_eq!(a.text(), format!("{last}\n"));
    let shown = s.sealgate(&[
        "audit",
        "witness",
        "--config",
        "witness.toml",
        "--show",
        ORIGIN,
    ]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&format!("\n{last}\n")));
}

/// Review F3: one source holding its share of connections (handshaked and
/// silent) cannot keep another source (the gateway) out, its next
/// connection is closed at once, and an idle connection is closed after
/// the header timeout (the idle keep-alive bound).
#[tokio::test]
async fn one_source_cannot_take_every_connection() {
    use sealgate::witness::{HEADER_TIMEOUT, MAX_CONNECTIONS_PER_IP};
    use tokio::io::AsyncReadExt;
    let s = Setup::new();
    let w = s.start();
    let tls = Arc::new(sealgate::tls::backend_client_config(&s.path("ca/ca.crt")).expect("tls"));
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_IP {
        let c = connector
            .connect(
                name.clone(),
                tokio::net::TcpStream::connect(w.addr).await.expect("tcp"),
            )
            .await
            .expect("handshake");
        held.push(c);
    }
    // One more from the same source: closed before any handshake.
    let tcp = tokio::net::TcpStream::connect(w.addr).await.expect("tcp");
    let more = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        connector.connect(name.clone(), tcp),
    )
    .await;
    assert!(
        matches!(more, Ok(Err(_))),
        "the 17th connection from one source is closed: {more:?}"
    );
    // Another source (127.0.0.2: Linux routes all of 127/8 to lo) is served.
    let other = reqwest::Client::builder()
        .tls_backend_preconfigured(
            sealgate::tls::backend_client_config(&s.path("ca/ca.crt")).expect("tls"),
        )
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(8))
        .build()
        .expect("client");
    let r = other
        .post(&w.url)
        .body(s.good(0, 5))
        .send()
        .await
        .expect("served");
    assert_eq!(r.status(), 200);
    // The held connections sent nothing: each is closed after the header
    // timeout (no place is held idle for longer).
    let started = std::time::Instant::now();
    let mut c = held.pop().expect("one");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        HEADER_TIMEOUT + std::time::Duration::from_secs(5),
        c.read(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    assert!(started.elapsed() < HEADER_TIMEOUT + std::time::Duration::from_secs(5));
    drop(held);
}
