//! Requests that pass TLS but must be refused by a stage of the gateway.
//! Each asserts the gRPC code, the sealgate reason, the audit record, and
//! that the backend was never reached.

mod common;

use bytes::Bytes;
use common::*;
use sealgate::ca::IssuedClient;
use sealgate::proto::CallResponse;
use tonic::Code;

#[tokio::test]
async fn unknown_client_id() {
    let gw = TestGateway::start().await;
    // A valid certificate from our CA for a client the registry does not know.
    let mallory = gw
        .ca
        .issue_client(&sealgate::ca::ClientRequest {
            id: "mallory",
            days: 30,
            tools: &[],
            out_dir: &gw.path("clients"),
            gateway: None,
            force: false,
        })
        .expect("issue");
    let raw = gw
        .raw_with(
            &mallory.cert,
            &mallory.key,
            &mallory.signing_key,
            &mallory.key_id,
        )
        .await;
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "CLIENT_UNKNOWN",
        0,
    );
    assert_eq!(gw.last_audit()["client_id"], "mallory");
}

#[tokio::test]
async fn disabled_client() {
    let gw = TestGateway::start().await;
    let dave = gw
        .ca
        .issue_client(&sealgate::ca::ClientRequest {
            id: "dave",
            days: 30,
            tools: &["get_meps".to_string()],
            out_dir: &gw.path("clients"),
            gateway: None,
            force: false,
        })
        .expect("issue");
    // Register dave, disabled, and reload the registry as SIGHUP would.
    let registry = std::fs::read_to_string(gw.path("clients.toml")).expect("read")
        + &dave
            .registry_toml
            .replace("enabled = true", "enabled = false");
    let reloaded = sealgate::identity::Registry::parse(
        &registry,
        sealgate::identity::RateLimitFile {
            per_second: 50,
            burst: 100,
        },
    )
    .expect("registry");
    let raw = gw
        .raw_with(&dave.cert, &dave.key, &dave.signing_key, &dave.key_id)
        .await;
    // Before the reload dave is unknown; after it, disabled.
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "CLIENT_UNKNOWN",
        0,
    );
    gw_registry_store(&gw, reloaded);
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "CLIENT_DISABLED",
        0,
    );
}

fn gw_registry_store(gw: &TestGateway, registry: sealgate::identity::Registry) {
    gw.gateway.registry.store(std::sync::Arc::new(registry));
}

#[tokio::test]
async fn key_of_another_client() {
    let gw = TestGateway::start().await;
    let alice = gw.profile(&gw.alice);
    let bob = gw.profile(&gw.bob);
    // alice's certificate, bob's signing key and key id.
    let raw = gw
        .raw_with(&alice.cert, &alice.key, &bob.signing_key, &bob.key_id)
        .await;
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "KEY_NOT_BOUND",
        0,
    );
    // alice's certificate and key id, but signed with bob's private key.
    let raw = gw
        .raw_with(&alice.cert, &alice.key, &bob.signing_key, &alice.key_id)
        .await;
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        0,
    );
}

#[tokio::test]
async fn tampered_payload() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let mut env = raw.seal(GET_MEPS);
    env.payload = Bytes::from(String::from_utf8_lossy(GET_MEPS).replace("\"SE\"", "\"DE\""));
    assert_denied(
        &gw,
        raw.send(env).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        0,
    );
}

#[tokio::test]
async fn tampered_signature() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let mut env = raw.seal(GET_MEPS);
    let mut sig = env.signature.to_vec();
    sig[10] ^= 0x40;
    env.signature = sig.into();
    assert_denied(
        &gw,
        raw.send(env.clone()).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        0,
    );
    env.signature = env.signature.slice(..63);
    assert_denied(
        &gw,
        raw.send(env).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        0,
    );
}

#[tokio::test]
async fn stale_and_future_timestamps() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let stale = raw.seal_at(
        GET_MEPS,
        now_ms() - 31_000,
        sealgate::envelope::random_nonce(),
    );
    assert_denied(
        &gw,
        raw.send(stale).await,
        Code::Unauthenticated,
        "TIMESTAMP_STALE",
        0,
    );
    let future = raw.seal_at(
        GET_MEPS,
        now_ms() + 31_000,
        sealgate::envelope::random_nonce(),
    );
    assert_denied(
        &gw,
        raw.send(future).await,
        Code::Unauthenticated,
        "TIMESTAMP_FUTURE",
        0,
    );
    // Inside the window is fine.
    let near = raw.seal_at(
        GET_MEPS,
        now_ms() - 20_000,
        sealgate::envelope::random_nonce(),
    );
    raw.send(near)
        .await
        .expect("20 s old is within the 30 s window");
}

#[tokio::test]
async fn configured_skew_window_is_enforced() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[envelope]\nclock_skew_secs = 5\n".into(),
        ..Default::default()
    })
    .await;
    let raw = gw.raw(&gw.alice).await;
    let stale = raw.seal_at(
        GET_MEPS,
        now_ms() - 8_000,
        sealgate::envelope::random_nonce(),
    );
    assert_denied(
        &gw,
        raw.send(stale).await,
        Code::Unauthenticated,
        "TIMESTAMP_STALE",
        0,
    );
}

#[tokio::test]
async fn replayed_envelope() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let env = raw.seal(GET_MEPS);
    raw.send(env.clone()).await.expect("first use is allowed");
    assert_eq!(gw.backend_calls(), 1);
    assert_denied(
        &gw,
        raw.send(env.clone()).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
        1,
    );
    // Also over a fresh connection.
    let raw2 = gw.raw(&gw.alice).await;
    assert_denied(
        &gw,
        raw2.send(env).await,
        Code::Unauthenticated,
        "REPLAYED_NONCE",
        1,
    );
}

#[tokio::test]
async fn a_forged_envelope_cannot_burn_a_nonce() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let nonce = sealgate::envelope::random_nonce();
    let good = raw.seal_at(GET_MEPS, now_ms(), nonce.clone());
    let mut forged = good.clone();
    forged.payload = Bytes::from_static(b"{}");
    assert_denied(
        &gw,
        raw.send(forged).await,
        Code::Unauthenticated,
        "SIGNATURE_INVALID",
        0,
    );
    raw.send(good)
        .await
        .expect("the genuine envelope with that nonce still passes");
}

#[tokio::test]
async fn oversized_envelope() {
    let gw = TestGateway::start_with(Options {
        config_extra: "[envelope]\nmax_envelope_bytes = 4096\n".into(),
        ..Default::default()
    })
    .await;
    let raw = gw.raw(&gw.alice).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_meps","arguments":{{"group":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    assert_denied(
        &gw,
        raw.send_payload(big.as_bytes()).await,
        Code::ResourceExhausted,
        "ENVELOPE_TOO_LARGE",
        0,
    );
    // Far beyond the limit, the transport refuses to decode it at all.
    let huge = "x".repeat(64 * 1024);
    let status = raw
        .send_payload(huge.as_bytes())
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(gw.backend_calls(), 0);
}

#[tokio::test]
async fn malformed_messages() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let cases: &[(&[u8], Code, &str)] = &[
        (b"{not json", Code::InvalidArgument, "JSON_INVALID"),
        (b"\xff\xfe", Code::InvalidArgument, "JSON_INVALID"),
        // A repeated key means one thing to serde_json (the last wins) and
        // another to a parser that keeps the first: refused, at any depth.
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}"#,
            Code::InvalidArgument,
            "JSON_INVALID",
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","\u0063ountry":"FR"}}}"#,
            Code::InvalidArgument,
            "JSON_INVALID",
        ),
        (
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            Code::InvalidArgument,
            "BATCH_NOT_SUPPORTED",
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/delete"}"#,
            Code::InvalidArgument,
            "METHOD_UNKNOWN",
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1}"#,
            Code::InvalidArgument,
            "JSONRPC_INVALID",
        ),
        (
            br#"{"jsonrpc":"2.0","method":"tools/list"}"#,
            Code::InvalidArgument,
            "JSONRPC_INVALID",
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a/../b"}}"#,
            Code::InvalidArgument,
            "PARAMS_INVALID",
        ),
    ];
    for (payload, code, reason) in cases {
        assert_denied(&gw, raw.send_payload(payload).await, *code, reason, 0);
    }
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_meps","arguments":{{"a":{}0{}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_denied(
        &gw,
        raw.send_payload(deep.as_bytes()).await,
        Code::InvalidArgument,
        "JSON_TOO_DEEP",
        0,
    );
}

#[tokio::test]
async fn envelope_shape_errors() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.alice).await;
    let status = raw
        .rpc
        .clone()
        .call(sealgate::proto::CallRequest { envelope: None })
        .await;
    assert_denied(
        &gw,
        status.map(|r| r.into_inner()),
        Code::InvalidArgument,
        "ENVELOPE_MISSING",
        0,
    );

    let mut env = raw.seal(GET_MEPS);
    env.audience = "spiffe://sealgate.test/other-gateway".into();
    assert_denied(
        &gw,
        raw.send(env).await,
        Code::Unauthenticated,
        "AUDIENCE_MISMATCH",
        0,
    );

    let short = raw.seal_at(GET_MEPS, now_ms(), Bytes::from(vec![1u8; 8]));
    assert_denied(
        &gw,
        raw.send(short).await,
        Code::InvalidArgument,
        "NONCE_INVALID",
        0,
    );

    let mut env = raw.seal(GET_MEPS);
    env.payload_type = "application/json".into();
    assert_denied(
        &gw,
        raw.send(env).await,
        Code::InvalidArgument,
        "PAYLOAD_TYPE_UNSUPPORTED",
        0,
    );

    let mut env = raw.seal(GET_MEPS);
    env.request_digest = Bytes::from(vec![0u8; 32]);
    assert_denied(
        &gw,
        raw.send(env).await,
        Code::InvalidArgument,
        "REQUEST_DIGEST_UNEXPECTED",
        0,
    );
}

#[tokio::test]
async fn expired_signing_key() {
    let gw = TestGateway::start().await;
    let registry = std::fs::read_to_string(gw.path("clients.toml")).expect("read");
    // Move alice's key window into the past.
    let alice_key = format!("id = \"{}\"", gw.alice.key_id);
    let start = registry.find(&alice_key).expect("alice key");
    let nb = registry[start..].find("not_before").expect("nb") + start;
    let end = registry[nb..]
        .find("\n\n")
        .map(|e| e + nb)
        .unwrap_or(registry.len());
    let rewritten = format!(
        "{}not_before = \"2020-01-01T00:00:00Z\"\nnot_after = \"2020-12-31T00:00:00Z\"{}",
        &registry[..nb],
        registry[end..].trim_start_matches(|c| c != '\n')
    );
    let reg = sealgate::identity::Registry::parse(
        &rewritten,
        sealgate::identity::RateLimitFile {
            per_second: 50,
            burst: 100,
        },
    )
    .expect("registry");
    gw_registry_store(&gw, reg);
    let raw = gw.raw(&gw.alice).await;
    assert_denied(
        &gw,
        raw.send_payload(GET_MEPS).await,
        Code::Unauthenticated,
        "KEY_NOT_VALID_NOW",
        0,
    );
}

#[tokio::test]
async fn method_and_tool_not_allowed() {
    let gw = TestGateway::start().await;
    let raw = gw.raw(&gw.bob).await;
    let details = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_mep_details","arguments":{"id":"MEP-900015"}}}"#;
    assert_denied(
        &gw,
        raw.send_payload(details).await,
        Code::PermissionDenied,
        "TOOL_NOT_ALLOWED",
        0,
    );
    assert_eq!(gw.last_audit()["tool"], "get_mep_details");
    let unknown_tool =
        br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"delete_everything"}}"#;
    assert_denied(
        &gw,
        raw.send_payload(unknown_tool).await,
        Code::PermissionDenied,
        "TOOL_NOT_ALLOWED",
        0,
    );
    let ping = br#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    assert_denied(
        &gw,
        raw.send_payload(ping).await,
        Code::PermissionDenied,
        "METHOD_NOT_ALLOWED",
        0,
    );
}

#[tokio::test]
async fn rate_limit_per_identity() {
    let gw = TestGateway::start_with(Options {
        bob_rate_limit: Some((1, 2)),
        ..Default::default()
    })
    .await;
    let bob = gw.raw(&gw.bob).await;
    bob.send_payload(GET_MEPS).await.expect("1st within burst");
    bob.send_payload(GET_MEPS).await.expect("2nd within burst");
    assert_denied(
        &gw,
        bob.send_payload(GET_MEPS).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
        2,
    );
    // alice has her own quota.
    let alice = gw.raw(&gw.alice).await;
    alice
        .send_payload(GET_MEPS)
        .await
        .expect("alice is not limited by bob");
}

/// Sends `body` as the gRPC message of a `Call`, as it is: no protobuf
/// encoding, so the body may be anything.
async fn call_with_raw_body(
    gw: &TestGateway,
    who: &IssuedClient,
    body: Vec<u8>,
) -> Result<CallResponse, tonic::Status> {
    use bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    struct RawCodec;
    struct RawEncoder;
    struct ProstDecoder;
    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for ProstDecoder {
        type Item = CallResponse;
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut DecodeBuf<'_>,
        ) -> Result<Option<CallResponse>, tonic::Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            prost::Message::decode(bytes)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }
    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = CallResponse;
        type Encoder = RawEncoder;
        type Decoder = ProstDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> ProstDecoder {
            ProstDecoder
        }
    }

    let p = gw.profile(who);
    let tls = sealgate::tls::client_config(&ca_dir(gw.dir.path()).join("ca.crt"), &p.cert, &p.key)
        .expect("tls config");
    let channel = sealgate::tls::connect_channel(&gw.addr.to_string(), "localhost", tls)
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static("/sealgate.v1.McpGatewayService/Call"),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Admission is decided from the headers, before the message is read: a
/// client over its rate is refused RATE_LIMITED whatever its body holds,
/// even bytes that are no protobuf at all or a message over the decoding
/// limit, which an admitted client would be refused for (INTERNAL,
/// OUT_OF_RANGE). The refusal is audited like any other.
#[tokio::test]
async fn a_client_over_its_rate_is_refused_before_its_message_is_decoded() {
    let gw = TestGateway::start_with(Options {
        bob_rate_limit: Some((1, 1)),
        ..Default::default()
    })
    .await;
    // Within the rate, the same garbage is decoded, and refused for what it is.
    let garbage = vec![0xff; 64];
    let decoded = call_with_raw_body(&gw, &gw.alice, garbage.clone())
        .await
        .expect_err("not a CallRequest");
    assert_eq!(decoded.code(), Code::Internal, "{decoded:?}");
    let oversized = vec![0u8; 8 << 20];
    let too_large = call_with_raw_body(&gw, &gw.alice, oversized.clone())
        .await
        .expect_err("over the decoding limit");
    assert_eq!(too_large.code(), Code::OutOfRange, "{too_large:?}");

    let bob = gw.raw(&gw.bob).await;
    bob.send_payload(GET_MEPS).await.expect("within burst");
    let calls = gw.backend_calls();
    assert_denied(
        &gw,
        call_with_raw_body(&gw, &gw.bob, garbage).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
        calls,
    );
    let audit = gw.last_audit();
    assert_eq!(audit["client_id"], "bob");
    assert_eq!(audit["stage"], "admission");
    // The second refusal of the same kind in the interval is counted into
    // the summary record, not written: the status is the same.
    let status = call_with_raw_body(&gw, &gw.bob, oversized)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some("RATE_LIMITED")
    );
    assert_eq!(gw.backend_calls(), calls);
}
