//! Proxy environment variables and upper-case schemes cannot reroute or
//! downgrade backend and OpenBao traffic. One test in its own binary: it
//! sets process-wide environment variables.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::services::*;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn proxy_variables_are_ignored_and_https_is_https_in_any_case() {
    // OpenBao (plain http on loopback) holds the backend's bearer token.
    let bao = OpenBao::start().await;
    bao.put("docs", json!({"token": "proxy-test-token"})).await;
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = sealgate::ca::init(
        &pki.path().join("ca"),
        "fixture.test",
        sealgate::ca::CaAlgorithm::EcdsaP256,
        365,
        false,
    )
    .expect("ca");
    let (cert, key) = (pki.path().join("f.crt"), pki.path().join("f.key"));
    ca.issue_server(&["127.0.0.1".into()], 30, &cert, &key, false)
        .expect("cert");
    let fixture = HttpFixture::start(&cert, &key, "proxy-test-token", true);

    // A "proxy" that counts every connection it gets.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = proxy.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
        }
    });
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        std::env::set_var(var, &proxy_url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    // The backend URL's scheme in upper case: still https, with the pinned
    // CA (a default client would not trust the fixture's test CA).
    let url = fixture.url.replace("https://", "HTTPS://");
    let token_file = pki.path().join("bao-token");
    sealgate::keys::write_private(&token_file, bao.root_token.as_bytes(), true).expect("token");
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[secrets.openbao]\naddress = \"{}\"\nauth = \"token\"\ntoken = \"file:{}\"\n\n\
             [[backend]]\nname = \"docs\"\nkind = \"http\"\nurl = \"{url}\"\nca = \"{}\"\n\
             bearer_token = \"openbao://secret/data/docs#token\"\nprefix = \"docs_\"\n",
            bao.addr.replace("http://", "HTTP://"),
            token_file.display(),
            pki.path().join("ca/ca.crt").display()
        ),
        ..Default::default()
    })
    .await;
    let echo = gw
        .client(&gw.ops)
        .await
        .call_tool("docs_echo", json!({"text": "direct"}))
        .await
        .expect("call");
    assert_eq!(
        echo["result"]["content"][0]["text"].as_str(),
        Some("echo: direct")
    );
    assert_eq!(
        hits.load(Ordering::Relaxed),
        0,
        "no backend or OpenBao connection went through the proxy"
    );
}
