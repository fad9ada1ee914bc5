//! Enrollment where keys stay with their owner: the client makes its TLS key
//! and a CSR (`sealgate csr`) and its signing key (`sealgate key generate`);
//! the CA signs the CSR (`ca sign-csr`) and registers the public key
//! (`ca register-key`) without ever reading a private key. Through the
//! library and the real binary, against a real gateway.

mod common;

use std::path::Path;

use common::cli::{mode, ok, sealgate};
use common::*;
use serde_json::json;

/// A client profile for files the client made itself.
fn write_profile(gw: &TestGateway, dir: &Path, id: &str, key_id: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{id}.profile.toml"));
    let text = format!(
        "endpoint = \"{}\"\nserver_name = \"localhost\"\nca = \"{}\"\ncert = \"{id}.crt\"\nkey = \"{id}.key\"\nsigning_key = \"{id}.signing.key\"\nkey_id = \"{key_id}\"\naudience = \"{AUDIENCE}\"\nspiffe_id = \"spiffe://{TRUST_DOMAIN}/client/{id}\"\n\n[[gateway_key]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
        gw.addr,
        ca_dir(gw.dir.path()).join("ca.crt").display(),
        gw.gateway_pub.key_id,
        gw.gateway_pub.public_key,
    );
    std::fs::write(&path, text).expect("profile");
    path
}

async fn append_to_registry(gw: &TestGateway, entry: &str) {
    let path = gw.path("clients.toml");
    let mut registry = std::fs::read_to_string(&path).expect("registry");
    registry.push('\n');
    registry.push_str(entry);
    std::fs::write(&path, registry).expect("registry");
    gw.reloader.reload().await;
}

#[tokio::test]
async fn csr_and_registered_key_make_a_signed_call() {
    let gw = TestGateway::start().await;
    let client_dir = tempfile::tempdir().expect("tempdir");
    let cd = client_dir.path();

    // Client side: both private keys are made here, 0600.
    let csr = sealgate::ca::write_client_csr(cd, TRUST_DOMAIN, "carol", false).expect("csr");
    assert_eq!(csr.key, cd.join("carol.key"));
    assert_eq!(mode(&csr.key), 0o600);
    let signing = cd.join("carol.signing.key");
    let (key_id, _) = sealgate::keys::generate_key_files(&signing, false).expect("signing key");
    assert_eq!(mode(&signing), 0o600);
    // Never overwritten without force, and nothing rewritten on refusal.
    let before = std::fs::read(&csr.key).expect("key");
    let again = sealgate::ca::write_client_csr(cd, TRUST_DOMAIN, "carol", false)
        .expect_err("refused")
        .to_string();
    assert_eq!(
        again,
        format!(
            "{}: already exists; pass --force to overwrite it",
            csr.key.display()
        )
    );
    assert_eq!(std::fs::read(&csr.key).expect("key"), before);

    // CA side: only public files cross over.
    let pem = gw
        .ca
        .sign_csr(&std::fs::read(&csr.csr).expect("csr"), "carol", 30)
        .expect("signed");
    std::fs::write(cd.join("carol.crt"), &pem).expect("cert");
    let der = sealgate::ca::read_cert_der(&cd.join("carol.crt")).expect("der");
    let identity = sealgate::identity::identity_from_cert(&der, TRUST_DOMAIN).expect("identity");
    assert_eq!(identity.client_id.as_str(), "carol");
    assert_eq!(identity.spiffe_id, "spiffe://sealgate.test/client/carol");
    let entry_path = gw.path("carol.registry.toml");
    let entry = gw
        .ca
        .register_key(&sealgate::ca::KeyRegistration {
            id: "carol",
            public_key: &sealgate::keys::pub_path(&signing),
            days: 30,
            tools: &["get_meps".to_string()],
            options: sealgate::ca::EntryOptions::default(),
            out: &entry_path,
            force: false,
        })
        .expect("entry");
    append_to_registry(&gw, &entry).await;

    let profile = write_profile(&gw, cd, "carol", &key_id);
    let client = sealgate::client::Client::connect(
        &sealgate::client::Profile::load(&profile).expect("profile"),
    )
    .await
    .expect("connects");
    let answer = client
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
        .expect("signed call");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("person/900001"), "{text}");
    let denied = client
        .call_tool("get_mep_details", json!({"id": "MEP-900015"}))
        .await
        .expect_err("not in the entry's tools");
    assert_eq!(denied.reason(), Some("TOOL_NOT_ALLOWED"));
}

#[tokio::test]
async fn a_csr_for_another_id_is_refused() {
    let gw = TestGateway::start().await;
    let cd = tempfile::tempdir().expect("tempdir");
    let csr =
        sealgate::ca::write_client_csr(cd.path(), TRUST_DOMAIN, "mallory", false).expect("csr");
    let out = cd.path().join("alice.crt");
    let err = gw
        .ca
        .sign_csr_file(&csr.csr, "alice", 30, &out, false)
        .expect_err("refused")
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: the CSR is for spiffe://sealgate.test/client/mallory, not spiffe://sealgate.test/client/alice; refused",
            csr.csr.display()
        )
    );
    assert!(!out.exists());
    // A CSR from another trust domain is refused for its own id too.
    let other = tempfile::tempdir().expect("tempdir");
    let csr =
        sealgate::ca::write_client_csr(other.path(), "other.test", "alice", false).expect("csr");
    let err = gw
        .ca
        .sign_csr_file(&csr.csr, "alice", 30, &out, false)
        .expect_err("refused")
        .to_string();
    assert!(
        err.ends_with(
            "the CSR is for spiffe://other.test/client/alice, not spiffe://sealgate.test/client/alice; refused"
        ),
        "{err}"
    );
}

/// The same enrollment through the `sealgate` binary, with the client's
/// folder moved out of reach while the CA works: the CA commands succeed
/// with the CSR and the public key alone.
#[tokio::test(flavor = "multi_thread")]
async fn enrollment_through_the_binary_never_shows_the_ca_a_private_key() {
    let gw = TestGateway::start().await;
    let client_home = tempfile::tempdir().expect("tempdir");
    let ch = client_home.path();
    let inbox = tempfile::tempdir().expect("tempdir"); // what the client sends the CA
    let ca = ca_dir(gw.dir.path());
    let ca_s = ca.to_str().expect("utf-8 path");

    let made = ok(&sealgate(
        ch,
        &[
            "csr",
            "--id",
            "dave",
            "--trust-domain",
            TRUST_DOMAIN,
            "--out",
            "c",
        ],
    ));
    assert!(
        made.contains("spiffe://sealgate.test/client/dave"),
        "{made}"
    );
    let key_out = ok(&sealgate(
        ch,
        &["key", "generate", "--out", "c/dave.signing.key"],
    ));
    let key_id = key_out
        .split("key id ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("key id printed")
        .trim()
        .to_string();
    for f in ["dave.key", "dave.signing.key"] {
        assert_eq!(mode(&ch.join("c").join(f)), 0o600, "{f}");
    }
    // Refused when it exists, without --force.
    let again = sealgate(
        ch,
        &[
            "csr",
            "--id",
            "dave",
            "--trust-domain",
            TRUST_DOMAIN,
            "--out",
            "c",
        ],
    );
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("c/dave.key: already exists; pass --force"),
        "{again:?}"
    );

    // Only the CSR and the public key go to the CA.
    for f in ["dave.csr", "dave.signing.key.pub"] {
        std::fs::copy(ch.join("c").join(f), inbox.path().join(f)).expect("send");
    }
    let hidden = ch.join("c-away");
    std::fs::rename(ch.join("c"), &hidden).expect("hide the client's keys");
    let id = inbox.path();
    let signed = ok(&sealgate(
        id,
        &[
            "ca", "sign-csr", "dave.csr", "--client", "dave", "--dir", ca_s, "--days", "30",
        ],
    ));
    assert!(
        signed.contains("spiffe://sealgate.test/client/dave"),
        "{signed}"
    );
    ok(&sealgate(
        id,
        &[
            "ca",
            "register-key",
            "dave",
            "--public-key",
            "dave.signing.key.pub",
            "--dir",
            ca_s,
            "--tool",
            "get_meps",
        ],
    ));
    // A CSR for another id is refused with the exact message.
    let wrong = sealgate(
        id,
        &[
            "ca", "sign-csr", "dave.csr", "--client", "erin", "--dir", ca_s,
        ],
    );
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert_eq!(
        String::from_utf8_lossy(&wrong.stderr).trim_end(),
        "error: dave.csr: the CSR is for spiffe://sealgate.test/client/dave, not spiffe://sealgate.test/client/erin; refused"
    );
    assert!(!id.join("erin.crt").exists());
    // The CA side holds no private key but its own.
    for dir in [id, ca.as_path()] {
        for e in std::fs::read_dir(dir).expect("list") {
            let p = e.expect("entry").path();
            if p.file_name().is_some_and(|n| n == "ca.key") {
                continue;
            }
            let text = std::fs::read(&p).expect("read");
            assert!(
                !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
                "{} holds a private key",
                p.display()
            );
        }
    }
    let listed = ok(&sealgate(id, &["ca", "list", "--dir", ca_s]));
    let dave_row = listed
        .lines()
        .find(|l| l.ends_with("  dave"))
        .unwrap_or_else(|| panic!("dave listed: {listed}"));
    // 30 days: within the 30-day renewal window already.
    assert!(dave_row.contains(" client  expiring  "), "{dave_row}");
    // The registered signing key is listed too, by its key id.
    let key_row = listed
        .lines()
        .find(|l| l.starts_with(key_id.as_str()))
        .unwrap_or_else(|| panic!("dave's key listed: {listed}"));
    assert!(key_row.contains(" key     valid     "), "{key_row}");
    assert!(key_row.ends_with("  dave"), "{key_row}");

    // Back on the client: the certificate joins its keys; the entry is registered.
    std::fs::rename(&hidden, ch.join("c")).expect("restore");
    std::fs::copy(id.join("dave.crt"), ch.join("c/dave.crt")).expect("deliver");
    let entry = std::fs::read_to_string(id.join("dave.registry.toml")).expect("entry");
    assert!(entry.contains(&format!("id = \"{key_id}\"")), "{entry}");
    append_to_registry(&gw, &entry).await;
    let profile = write_profile(&gw, &ch.join("c"), "dave", &key_id);
    let profile_s = profile.to_str().expect("utf-8").to_string();
    let dir = ch.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        sealgate(
            &dir,
            &[
                "call",
                "get_meps",
                "--args",
                r#"{"country":"SE","limit":1}"#,
                "--profile",
                &profile_s,
            ],
        )
    })
    .await
    .expect("join");
    let out = ok(&out);
    assert!(out.contains("person/900001"), "{out}");
}
